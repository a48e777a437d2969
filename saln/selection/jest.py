"""JEST and RHO-LOSS: pick the images a learner has most left to learn, relative to a reference model.

Every method here scores a super-batch of B candidates and keeps ``b = batch.keep`` of them.

* ``jest``: per-example scores (``learnability`` = learner loss - reference loss by default),
  sampled by the joint sampler below. Its score matrix is diagonal, so the sampler reduces to
  sequential softmax sampling of the per-example scores without replacement.
* ``jest_joint``: a B x B learnability matrix whose off-diagonal entries come from a pairwise
  sigmoid loss on penultimate embeddings, so what one chunk picks changes the next chunk's odds.
* ``rholoss``: greedy top-b of the per-example learnability, the sampler's deterministic limit.

The learner's losses and embeddings come from one no-grad forward of the whole super-batch
(``batch.learner()``, which counts those B images as scored); the reference model's come from
tables written once by the ``reference`` stage, so a step only looks them up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from saln.config import number, require
from saln.errors import SalnError
from saln.selection.base import SelectionBatch, Selector, check_finite, top_k
from saln.selection.registry import register

SCORES = ("learnability", "hard_learner", "easy_reference")
DEFAULT_SCORE = "learnability"
DEFAULT_CHUNKS = 16
PAIR_SCALE = 10.0  # sigmoid-loss logit = PAIR_SCALE * cosine similarity of centred embeddings


def jest_options(params: dict) -> dict:
    """The ``jest`` block of params.yaml, validated: keyword options of this module's selectors."""
    block = require(params, "jest", "params")
    score = require(block, "score", "jest")
    if score not in SCORES:
        raise SalnError(f"jest.score must be one of {', '.join(SCORES)}, got {score!r}")
    return {"score": score, "n_chunks": number(block, "n_chunks", "jest", lo=1, integer=True)}


# ---------------------------------------------------------------------------------------------
# Scores


def combine(learner: torch.Tensor, reference: torch.Tensor, score: str) -> torch.Tensor:
    """Learner and reference losses (vectors or matrices alike) -> the score to maximise."""
    if score == "learnability":
        return learner - reference
    if score == "hard_learner":
        return learner
    if score == "easy_reference":
        return -reference
    raise SalnError(f"jest.score must be one of {', '.join(SCORES)}, got {score!r}")


def learner_losses(batch: SelectionBatch) -> torch.Tensor:
    """Per-example cross-entropy of the current learner (one no-grad forward, counted as scored)."""
    return F.cross_entropy(batch.learner().logits.double(), batch.labels, reduction="none")


def reference_losses(batch: SelectionBatch) -> torch.Tensor:
    return batch.reference_loss().double().to(batch.labels.device)


def pairwise_sigmoid_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """B x B sigmoid loss of every pair: same-label pairs are positives, all others negatives.

    The logit of a pair is ``PAIR_SCALE`` times the cosine similarity of the embeddings after
    subtracting the batch mean: penultimate ResNet features are non-negative (post-ReLU), so
    raw cosines all crowd near 1 and would not separate positives from negatives.
    """
    x = embeddings.double()
    x = F.normalize(x - x.mean(dim=0, keepdim=True), dim=1)
    logits = PAIR_SCALE * (x @ x.T)
    sign = (labels[:, None] == labels[None, :]).double() * 2 - 1
    return F.softplus(-sign * logits)  # = -log sigmoid(sign * logit)


def joint_loss_matrix(example_losses: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor,
                      keep: int) -> torch.Tensor:
    """M with sum_{i,j in S} M_ij = the loss of a kept sub-batch S of size ``keep``.

    That loss is, per kept image, its cross-entropy plus its mean pairwise sigmoid loss against
    the other kept images: the cross-entropy sits on the diagonal (a self-pair says nothing) and
    each pair's loss, divided by keep - 1, off it, so both terms stay on the same scale.
    """
    pairs = pairwise_sigmoid_loss(embeddings, labels) / max(keep - 1, 1)
    pairs.fill_diagonal_(0.0)
    return pairs + torch.diag(example_losses)


# ---------------------------------------------------------------------------------------------
# Sampling


def chunk_sizes(keep: int, n_chunks: int) -> list[int]:
    """``keep`` split into min(n_chunks, keep) chunks whose sizes differ by at most one."""
    if keep < 1:
        raise SalnError(f"a selector must keep at least 1 image, got {keep}")
    if n_chunks < 1:
        raise SalnError(f"jest.n_chunks must be >= 1, got {n_chunks}")
    n = min(n_chunks, keep)
    size, extra = divmod(keep, n)
    return [size + 1] * extra + [size] * (n - extra)


def conditional_logits(scores: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Gain of adding each candidate i to the selected set A: M_ii + sum_{j in A} (M_ij + M_ji).

    With s(S) = sum_{i,j in S} M_ij this is exactly s(A + i) - s(A). Selected candidates get -inf.
    """
    chosen = selected.to(scores.dtype)
    gain = scores.diagonal() + scores @ chosen + chosen @ scores
    return gain.masked_fill(selected, float("-inf"))


def gumbel_noise(n: int, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """n standard Gumbel draws from the run's generator (on the generator's device)."""
    u = torch.rand(n, generator=generator, device=generator.device, dtype=dtype)
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(dtype).tiny)))


def joint_sample(scores: torch.Tensor, keep: int, n_chunks: int,
                 generator: torch.Generator) -> torch.Tensor:
    """Draw ``keep`` distinct positions from a B x B score matrix in chunks, as JEST does.

    Each chunk is drawn without replacement from softmax(conditional logits) over the candidates
    not yet selected, the logits being conditioned on every earlier chunk. A chunk of k is drawn
    by Gumbel-top-k: the k largest of logits + i.i.d. Gumbel noise are distributed exactly as k
    sequential softmax draws without replacement (Kool, van Hoof and Welling, 2019), in one
    vectorised step. Hence with a diagonal matrix, whose conditional logits never change, the
    chunks together are sequential softmax sampling of the diagonal without replacement.
    Deterministic given the generator's state.
    """
    scores = check_finite(scores.double())
    size = scores.shape[0]
    if keep > size:
        raise SalnError(f"cannot keep {keep} of {size} candidates")
    selected = torch.zeros(size, dtype=torch.bool, device=scores.device)
    picks = []
    for k in chunk_sizes(keep, n_chunks):
        noise = gumbel_noise(size, generator, scores.dtype).to(scores.device)
        chunk = torch.topk(conditional_logits(scores, selected) + noise, k).indices
        selected[chunk] = True
        picks.append(chunk)
    return torch.cat(picks)


# ---------------------------------------------------------------------------------------------
# Selectors


class _ReferenceSelector(Selector):
    """Shared options: ``score`` (one of SCORES) and ``n_chunks`` (chunks per sampled batch)."""

    needs_reference = True

    def __init__(self, score: str = DEFAULT_SCORE, n_chunks: int = DEFAULT_CHUNKS, **options):
        super().__init__(score=score, n_chunks=n_chunks, **options)
        if score not in SCORES:
            raise SalnError(f"jest.score must be one of {', '.join(SCORES)}, got {score!r}")
        if isinstance(n_chunks, bool) or not isinstance(n_chunks, int) or n_chunks < 1:
            raise SalnError(f"jest.n_chunks must be an integer >= 1, got {n_chunks!r}")
        self.score, self.n_chunks = score, n_chunks

    @classmethod
    def options_from_params(cls, params: dict) -> dict:
        return jest_options(params)

    def example_scores(self, batch: SelectionBatch, score: str) -> torch.Tensor:
        return combine(learner_losses(batch), reference_losses(batch), score)


@register("jest")
class Jest(_ReferenceSelector):
    """JEST with per-example scores: a diagonal score matrix through the joint sampler."""

    def select(self, batch: SelectionBatch) -> torch.Tensor:
        scores = torch.diag(self.example_scores(batch, self.score))
        return joint_sample(scores, batch.keep, self.n_chunks, batch.generator)


@register("jest_joint")
class JestJoint(_ReferenceSelector):
    """JEST with a full B x B score matrix: cross-entropy plus a pairwise loss on embeddings.

    Both models' matrices come from ``joint_loss_matrix``; the learner's embeddings from the
    same no-grad forward as its logits, the reference model's from the reference stage's table.
    """

    needs_reference_embeddings = True

    def select(self, batch: SelectionBatch) -> torch.Tensor:
        labels, keep = batch.labels, batch.keep
        learner = joint_loss_matrix(learner_losses(batch), batch.learner().embeddings, labels, keep)
        reference_emb = batch.reference_embeddings().to(labels.device)
        reference = joint_loss_matrix(reference_losses(batch), reference_emb, labels, keep)
        return joint_sample(combine(learner, reference, self.score), keep, self.n_chunks,
                            batch.generator)


@register("rholoss")
class RhoLoss(_ReferenceSelector):
    """RHO-LOSS: the ``keep`` candidates of highest learnability (learner - reference loss).

    Always learnability, whatever ``score`` says: that is the method's definition. It is the
    limit of ``jest`` as the scores are scaled up: softmax sampling turns into taking the top.
    """

    def select(self, batch: SelectionBatch) -> torch.Tensor:
        return top_k(self.example_scores(batch, "learnability"), batch.keep)
