"""The paper's headline claims, what our runs measured, and a verdict for each."""

from __future__ import annotations

from dataclasses import dataclass

from saln.report.compare import Comparison, clearly_positive, compare
from saln.report.paper import Paper

SUPPORTED, NOT_SUPPORTED, NOT_TESTED = "supported", "not supported", "not tested by this run"

RULE = ("A difference counts when it exceeds two standard errors of the difference of the means over "
        "seeds (with a single seed per method: when it is above zero). Speedups are ratios of means: "
        "standard's training seconds (or images back-propagated) over the method's.")


@dataclass(frozen=True)
class Claim:
    text: str       # the paper's claim
    measured: str   # what our runs measured
    verdict: str
    note: str       # scope, and what would test it (further)


def _speed(c: Comparison) -> str:
    return (f"{c.dataset}: {c.time_speedup:.2f}× by seconds ({c.seconds_saved:+.1f} ± "
            f"{c.seconds_saved_se:.1f} s saved), {c.image_speedup:.2f}× by images back-propagated "
            f"(bound {c.bound:.2f}×)")


def _gain(c: Comparison) -> str:
    return f"{c.dataset}: {c.acc_gain:+.2f} ± {c.acc_gain_se:.2f} pp test accuracy (n={c.n[0]} vs {c.n[1]})"


def _all(comps: list[Comparison], holds) -> str:
    return SUPPORTED if all(holds(c) for c in comps) else NOT_SUPPORTED


def _faster(c: Comparison) -> bool:
    return clearly_positive(c.seconds_saved, c.seconds_saved_se)


def _better(c: Comparison) -> bool:
    return clearly_positive(c.acc_gain, c.acc_gain_se)


def evaluate_claims(runs: list[dict], paper: Paper, datasets: list[str], filter_ratio: float) -> list[Claim]:
    vs_standard = [c for d in datasets if (c := compare(runs, d, "saln", "standard"))]
    vs_jest = [c for d in datasets if (c := compare(runs, d, "saln", "jest"))]
    scope = _scope_note(paper, vs_standard + vs_jest)
    need_standard = "needs finished saln and standard runs on one dataset (train.methods)"
    claims = [
        _comparison_claim("SALN trains faster than standard training.", vs_standard, _speed, _faster,
                          need_standard, scope),
        _comparison_claim("SALN reaches higher accuracy than standard training.", vs_standard, _gain,
                          _better, need_standard, scope),
        _comparison_claim("SALN trains faster than JEST and reaches better accuracy.", vs_jest,
                          lambda c: f"{_speed(c)}; {_gain(c)}", lambda c: _faster(c) and _better(c),
                          "needs finished saln and jest runs on one dataset: add jest to train.methods",
                          scope),
        _up_to_speedup(paper.claims.get("max_speedup_vs_standard"), vs_standard, filter_ratio, scope),
        _up_to_gain(paper.claims.get("max_acc_gain_vs_standard"), vs_standard, scope),
    ]
    return claims


def _scope_note(paper: Paper, comps: list[Comparison]) -> str:
    if any(paper.dataset_id(c.dataset) for c in comps):
        return ""
    names = " and ".join(paper.datasets.values())
    return (f"Measured only on datasets the paper did not use; to test it on {names}, "
            "train with data.names: [pets, cifar10] (the paper's configuration).")


def _comparison_claim(text, comps, describe, holds, how_to_test, scope) -> Claim:
    if not comps:
        return Claim(text, "no pair of runs to compare", NOT_TESTED, f"Testing it {how_to_test}.")
    return Claim(text, "; ".join(describe(c) for c in comps), _all(comps, holds), scope)


def _up_to_speedup(target, comps: list[Comparison], filter_ratio: float, scope: str) -> Claim:
    text = f"Up to {target:g}× reduction in training time over standard training." if target else \
        "Up to N× reduction in training time over standard training."
    bound = 1 / (1 - filter_ratio)
    if not comps or not target:
        return Claim(text, "no saln and standard runs to compare", NOT_TESTED,
                     "Testing it needs finished saln and standard runs on one dataset.")
    best = max(comps, key=lambda c: c.time_speedup)
    measured = (f"largest speedup {best.time_speedup:.2f}× by seconds and {best.image_speedup:.2f}× by "
                f"images back-propagated ({best.dataset}); back-prop bound 1/(1 - filter_ratio) = "
                f"{bound:.2f}× (B/keep = {best.bound:.2f}×)")
    note = scope
    if best.bound < target:
        note = (f"At filter_ratio {filter_ratio:g} back-propagating fewer images alone cannot give "
                f"{target:g}×; it needs filter_ratio ≥ {1 - 1 / target:.3f}. " + scope).strip()
    return Claim(text, measured, SUPPORTED if best.time_speedup >= target else NOT_SUPPORTED, note)


def _up_to_gain(target, comps: list[Comparison], scope: str) -> Claim:
    text = f"Up to {target:g}% higher accuracy than standard training (read as percentage points)." \
        if target else "Up to N% higher accuracy than standard training."
    if not comps or not target:
        return Claim(text, "no saln and standard runs to compare", NOT_TESTED,
                     "Testing it needs finished saln and standard runs on one dataset.")
    best = max(comps, key=lambda c: c.acc_gain)
    measured = f"largest gain {best.acc_gain:+.2f} ± {best.acc_gain_se:.2f} pp test accuracy ({best.dataset})"
    return Claim(text, measured, SUPPORTED if best.acc_gain >= target else NOT_SUPPORTED, scope)


def claims_markdown(claims: list[Claim]) -> str:
    lines = ["| claim (paper) | measured here | verdict | note |", "|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c.text} | {c.measured} | **{c.verdict}** | {c.note or '—'} |")
    return "\n".join(lines)
