"""Resume after a kill, and determinism: a resumed run ends bitwise equal to an uninterrupted one.

All runs are on CPU with one thread (bitwise equality needs a fixed thread count) on a tiny
synthetic dataset, so the whole file takes seconds. The ``slow`` test kills a real process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from saln import checkpoint as ckpt
from saln import train as train_module
from saln.augment import AugmentSpec
from saln.train import RunInputs, TrainConfig, train_run
from tests.test_jest import tiny_config as jest_tiny_config
from tests.test_jest import tiny_prepared

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("train_seconds", "selection_seconds", "eval_seconds", "provenance")


def tiny_inputs(method: str) -> RunInputs:
    """Every table any selector reads: synthetic features and reference losses/embeddings."""
    prepared = tiny_prepared()
    rng = np.random.default_rng(1)
    n = len(prepared.labels)
    # Random augmentation on, so the global torch RNG (kornia's draws) matters for equality.
    spec = AugmentSpec(resize=8, hflip=0.5, rotation=10, brightness=0.1, contrast=0.1, saturation=0.1,
                       hue=0.05, test_resize=8, test_crop=8)
    options = {"score": "learnability", "n_chunks": 2} if method.startswith("jest") else {}
    return RunInputs(prepared, spec, features=rng.random((n, 8)), reference_losses=rng.random(n),
                     reference_embeddings=rng.random((n, 8)), selector_options=options)


def tiny_config(**overrides) -> TrainConfig:
    """test_jest's tiny run, over three epochs (two checkpoints) with logged batches and weight decay."""
    return jest_tiny_config(**{"epochs": 3, "weight_decay": 5e-4, "log_batches": (0, 2), **overrides})


class Killed(Exception):
    """Stands in for SIGKILL: raised right after a checkpoint is written."""


def kill_after_epoch(monkeypatch, epoch: int) -> None:
    real_save = train_module.save_checkpoint

    def save_then_die(payload, path):
        real_save(payload, path)
        if payload["epoch"] == epoch:
            raise Killed

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)


def assert_same_run(a: Path, b: Path) -> None:
    """Equal metrics (timings and provenance aside), selections, weights and curves, bitwise."""
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ({k: v for k, v in ma.items() if k not in TIMING}
            == {k: v for k, v in mb.items() if k not in TIMING})
    with np.load(a / "selections.npz") as sa, np.load(b / "selections.npz") as sb:
        assert sorted(sa.files) == sorted(sb.files)
        for name in sa.files:
            np.testing.assert_array_equal(sa[name], sb[name])
    wa, wb = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])]
    curves = [sorted(p.name for p in (d / "dvclive/plots/metrics").iterdir()) for d in (a, b)]
    assert curves[0] == curves[1] and "val_acc.tsv" in curves[0]
    for name in curves[0]:
        ta, tb = ((d / "dvclive/plots/metrics" / name).read_text().splitlines() for d in (a, b))
        assert [r.split("\t")[0] for r in ta] == [r.split("\t")[0] for r in tb]  # the same steps
        if "seconds" not in name:
            assert ta == tb, name


def resumed_epoch(err: str, path: Path) -> int:
    found = re.findall(rf"^resumed from {re.escape(str(path))} after epoch (\d+) of (\d+)$", err, re.M)
    assert len(found) == 1, err
    return int(found[0][0])


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys, one_thread):
    """jest draws from every stream: the epoch shuffle's generator, the selectors' (Gumbel noise) and
    kornia's (the global torch RNG); the run also evaluates at budget points inside epochs."""
    method, cfg = "jest", tiny_config()
    ck, run = tmp_path / "checkpoints" / "seed0.pt", tmp_path / "run"
    train_run(tiny_inputs(method), cfg, method, 0, tmp_path / "whole", progress=False)

    kill_after_epoch(monkeypatch, 2)
    with pytest.raises(Killed):
        train_run(tiny_inputs(method), cfg, method, 0, run, progress=False, checkpoint=ck,
                  checkpoint_key="k")
    assert ck.is_file() and not (run / "metrics.json").exists()
    payload = ckpt.load(ck)
    assert payload["format"] == ckpt.FORMAT and payload["epoch"] == 2
    assert len(payload["rng"]["generators"]) == 2  # the selectors' generator and the shuffle's
    monkeypatch.undo()
    shutil.rmtree(run)  # DVC deletes a stage's outs (dvclive/ too) before rerunning it
    capsys.readouterr()

    train_run(tiny_inputs(method), cfg, method, 0, run, progress=False, checkpoint=ck, checkpoint_key="k")
    assert resumed_epoch(capsys.readouterr().err, ck) == 2
    assert not ck.exists() and not ckpt.temporary(ck).exists()
    assert_same_run(tmp_path / "whole", run)
    rows = (run / "dvclive/plots/metrics/epoch.tsv").read_text().splitlines()
    epochs = [float(r.split("\t")[1]) for r in rows[1:]]
    assert [r.split("\t")[0] for r in rows[1:]] == [str(i) for i in range(len(epochs))]
    assert [e for e in epochs if e == int(e)] == [0, 1, 2, 3]  # before training, then every epoch's end
    # Budget points inside epochs 1, 2 and 3 (the ones before the kill rebuilt from the checkpoint).
    assert {int(e) for e in epochs if e != int(e)} == {0, 1, 2} and epochs == sorted(epochs)


def test_checkpoint_of_other_params_or_code_is_discarded(tmp_path, capsys, one_thread):
    cfg, ck = tiny_config(epochs=1), tmp_path / "seed0.pt"
    ckpt.save_atomic({"key": "old", "run": "x", "epoch": 1}, ck)
    train_run(tiny_inputs("standard"), cfg, "standard", 0, tmp_path / "run", progress=False,
              checkpoint=ck, checkpoint_key="new")
    err = capsys.readouterr().err
    assert re.search(rf"^discarded checkpoint {re.escape(str(ck))}: params or code changed", err, re.M)
    assert "resumed" not in err and len(err.strip().splitlines()) == 1
    assert not ck.exists() and (tmp_path / "run" / "metrics.json").is_file()


def test_checkpoint_of_another_config_or_a_torn_file_is_discarded(tmp_path, monkeypatch, capsys,
                                                                  one_thread):
    ck = tmp_path / "seed0.pt"
    kill_after_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        train_run(tiny_inputs("standard"), tiny_config(epochs=2), "standard", 0, tmp_path / "a",
                  progress=False, checkpoint=ck, checkpoint_key="k")
    monkeypatch.undo()
    key = {"key": "k", "run": train_module.run_identity(tiny_inputs("standard"), tiny_config(epochs=2),
                                                        "standard", 0, True, torch.device("cpu"))}
    assert ckpt.load(ck)["run"] == key["run"]
    state = train_module.RunState(None, {})
    # The same key but another learning rate (say the caller's key missed a param): not resumed.
    other = {**key, "run": train_module.run_identity(tiny_inputs("standard"), tiny_config(epochs=2, lr=0.1),
                                                     "standard", 0, True, torch.device("cpu"))}
    assert train_module.resume(ck, other, state, 2) == 0 and not ck.exists()
    assert "config or inputs changed" in capsys.readouterr().err
    ck.write_bytes(b"half a checkpoint")  # a file not written by save_atomic, e.g. copied mid-write
    assert train_module.resume(ck, key, state, 2) == 0 and not ck.exists()
    assert "unreadable" in capsys.readouterr().err


def test_a_diverged_run_leaves_no_checkpoint(tmp_path, monkeypatch, one_thread):
    """Divergence is deterministic, an outcome rather than an interruption: nothing to resume."""
    from saln.train import DivergedError

    real_epoch, ck = train_module.train_epoch, tmp_path / "seed0.pt"

    def diverge_at_epoch_2(*args):
        if args[4].number == 2:  # the pass
            raise DivergedError("loss became non-finite at epoch 2")
        return real_epoch(*args)

    monkeypatch.setattr(train_module, "train_epoch", diverge_at_epoch_2)
    with pytest.raises(DivergedError):
        train_run(tiny_inputs("standard"), tiny_config(), "standard", 0, tmp_path / "run", progress=False,
                  checkpoint=ck, checkpoint_key="k")
    assert not ck.exists() and not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("method", ["standard", "saln", "jest"])
def test_same_params_and_seed_give_bitwise_equal_runs(tmp_path, one_thread, method):
    cfg = tiny_config(epochs=1)
    for name in ("a", "b"):
        train_run(tiny_inputs(method), cfg, method, 5, tmp_path / name, progress=False)
    assert_same_run(tmp_path / "a", tmp_path / "b")
    kept = np.load(tmp_path / "a" / "selections.npz")["kept"]
    per_batch = cfg.batch_size if method == "standard" else cfg.keep
    assert kept.shape == (2, cfg.batch_size) and (kept.sum(1) == per_batch).all()


def test_run_key_follows_params_and_code_not_order(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    key = ckpt.run_key({"train": {"lr": 0.1, "epochs": 3}}, [a, b])
    assert key == ckpt.run_key({"train": {"epochs": 3, "lr": 0.1}}, [b, a])
    assert key != ckpt.run_key({"train": {"lr": 0.2, "epochs": 3}}, [a, b])
    b.write_text("y = 3\n")
    assert key != ckpt.run_key({"train": {"lr": 0.1, "epochs": 3}}, [a, b])


def test_rate_checkpoints_lie_in_the_runs_folder_outside_results_train():
    """One file per rate in the (dataset, method, seed) process's checkpoint folder, named as its rate's run."""
    from saln.layout import CHECKPOINT_ROOT, TRAIN_ROOT, rate_checkpoint, rate_dir, run_dir

    folder = run_dir(CHECKPOINT_ROOT, "digits", "jest", 0)
    assert folder == Path("results/checkpoints/digits/jest/seed0")
    assert rate_checkpoint(folder, 0.1) == folder / "lr0.1.pt"
    assert rate_checkpoint(folder, 3e-5) == folder / "lr3e-05.pt"
    assert rate_dir(run_dir(TRAIN_ROOT, "digits", "jest", 0), 0.001) == Path("results/train/digits/jest/seed0/lr0.001")
    assert not folder.is_relative_to(TRAIN_ROOT)


def test_imported_project_files_are_the_repos_own_sources():
    files = ckpt.imported_project_files()
    assert ROOT / "saln" / "train.py" in files and ROOT / "saln" / "checkpoint.py" in files
    assert all(p.suffix == ".py" and p.is_relative_to(ROOT) for p in files)
    assert not any(".venv" in p.parts or "site-packages" in p.parts for p in files)
    assert all(p.is_file() for p in files)


def test_imported_project_files_skip_modules_with_relative_file_names(monkeypatch, tmp_path):
    """torch._classes reports a bare "_classes.py": from the repo root it must not become a repo file."""
    import types

    monkeypatch.chdir(ROOT)
    monkeypatch.setitem(sys.modules, "fake_relative", types.SimpleNamespace(__file__="_classes.py"))
    assert ROOT / "_classes.py" not in ckpt.imported_project_files()


CHILD = """
import sys
import torch
sys.path.insert(0, sys.argv[3])
torch.set_num_threads(1)
from test_resume import tiny_config, tiny_inputs
from saln.train import train_run
train_run(tiny_inputs("jest"), tiny_config(epochs=4), "jest", 0, sys.argv[1], progress=False,
          checkpoint=sys.argv[2], checkpoint_key="k")
"""


@pytest.mark.slow
def test_sigkilled_process_resumes_to_the_uninterrupted_result(tmp_path, capsys, one_thread):
    ck, run = tmp_path / "checkpoints" / "seed0.pt", tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(run), str(ck), str(ROOT / "tests")],
                             cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not ck.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(child.pid, signal.SIGKILL)  # its own session: the child and anything it started
    _, child_err = child.communicate()
    assert child.returncode == -signal.SIGKILL, child_err.decode()[-2000:]
    assert ck.is_file() and not (run / "metrics.json").exists()  # killed mid-run, not after it

    capsys.readouterr()
    train_run(tiny_inputs("jest"), tiny_config(epochs=4), "jest", 0, run, progress=False,
              checkpoint=ck, checkpoint_key="k")  # over the killed run's leftovers in run/
    assert 1 <= resumed_epoch(capsys.readouterr().err, ck) < 4
    assert not ck.exists()
    train_run(tiny_inputs("jest"), tiny_config(epochs=4), "jest", 0, tmp_path / "whole", progress=False)
    assert_same_run(tmp_path / "whole", run)


@pytest.mark.parametrize("every, saves", [(0.0, 2), (1e9, 0)])
def test_checkpoints_are_saved_at_most_once_per_interval(monkeypatch, tmp_path, every, saves):
    """Saving a few-second epoch costs more than redoing it: the stage saves at most every 30 s."""
    calls = []
    monkeypatch.setattr(train_module, "save_checkpoint", lambda payload, path: calls.append(path))
    train_run(tiny_inputs("standard"), tiny_config(), "standard", 0, tmp_path / "run", progress=False,
              checkpoint=tmp_path / "ckpt.pt", checkpoint_key="k", checkpoint_every=every)
    assert len(calls) == saves  # 3 epochs: after epochs 1 and 2, never after the last


def test_killed_reference_model_resumes_to_the_uninterrupted_tables(tmp_path, monkeypatch, capsys, one_thread):
    """The reference stage checkpoints as a train run does: a kill after epoch 1 loses nothing."""
    from saln import reference as reference_module
    from saln.reference import ReferenceConfig, train_reference
    from tests.test_jest import tiny_spec

    prepared, spec, cfg = tiny_prepared(), tiny_spec(), tiny_config()
    ref = ReferenceConfig(epochs=3, batch_size=16, lr=cfg.lr, seed=0)  # cfg: the same schedule
    ck = tmp_path / "checkpoints" / "reference.pt"
    monkeypatch.setattr(reference_module, "SAVE_EVERY_S", 0.0)
    kill_after_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        train_reference(prepared, spec, cfg, ref, tmp_path / "out", tmp_path / "run", progress=False,
                        checkpoint=ck, checkpoint_key="k")
    monkeypatch.setattr(train_module, "save_checkpoint", ckpt.save_atomic)
    capsys.readouterr()
    train_reference(prepared, spec, cfg, ref, tmp_path / "out", tmp_path / "run", progress=False,
                    checkpoint=ck, checkpoint_key="k")
    assert resumed_epoch(capsys.readouterr().err, ck) == 1 and not ck.exists()
    train_reference(prepared, spec, cfg, ref, tmp_path / "whole", tmp_path / "whole_run", progress=False)
    for name in ("losses.npy", "embeddings.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "out" / name), np.load(tmp_path / "whole" / name))
    wa, wb = (torch.load(d / "model.pt", weights_only=True) for d in (tmp_path / "out", tmp_path / "whole"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
