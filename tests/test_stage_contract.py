"""The contract between dvc.yaml and the stage scripts, checked on a tiny pipeline run for real.

- Every path a stage reads or writes is an argument of its cmd: moved under one temporary root,
  the whole pipeline runs and leaves the repository itself untouched.
- Each stage's ``params:`` in dvc.yaml are exactly the keys its script reads.
- README's "Adding a selector" steps train a new method of an existing family, and a new family.
"""

from __future__ import annotations

import json
import os
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import saln.checkpoint
import saln.config
import saln.launch
import tests.test_dvc_deps as dvc_deps
from tests.conftest import ROOT
from tests.test_pipeline import copy_sources, merge, run

LR = 0.03
# One method per family, one seed, one rate, one epoch on 16 px digits; small networks from
# scratch (the weights do not change which params or paths a stage touches).
TINY = {
    "data": {"names": ["digits"], "sources": {"digits": {"image_size": 16}}},
    "augment": {"resize": 16, "test_resize": 16, "test_crop": 16},
    "features": {"backbone": "resnet18", "weights": "none", "batch_size": 64},
    "model": {"arch": "resnet18", "weights": "none"},
    "reference": {"epochs": 1},
    "prune": {"curve_fractions": [0.5, 1.0]},
    "active": {"rounds": 1, "strategies": ["maxent_seals", "random"]},
    "train": {"methods": {"baselines": ["standard"], "spectral": ["saln"], "jest": ["jest"],
                          "uncertainty": ["infodensity"], "prune": ["prune_easy"]},
              "seeds": [0], "epochs": 1, "batch_size": 32, "lrs": [LR], "eval_subset": 200,
              "device": "cpu"},
}
# Every stage script but validate (which depends on the whole params.yaml file).
STAGE_SCRIPTS = ["prepare", "augment", "features", "reference", "prune", "active", "train_baselines",
                 "train_spectral", "train_jest", "train_uncertainty", "train_prune", "best_lr",
                 "diagnostics", "summary", "report"]
IDENTITY_ARGS = {"--dataset", "--method", "--seed"}  # which run a stage is; every other value is a path
UNTRACKED = {".git", "__pycache__", ".pytest_cache"}  # and .dvc/tmp: DVC's own scratch space


@pytest.fixture(autouse=True)
def one_thread_per_process(monkeypatch, one_thread):
    """On a shared machine, threads of tiny networks fight each other: a stage runs several times
    faster on one (in this process through conftest's one_thread, in children through the env)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")


def tiny_copy(repo: Path, override: dict) -> Path:
    """The repo's sources (no results, no lock) with ``override`` merged into params.yaml, as a
    committed git repository (dvclive, in the training stages, asks git for the revision)."""
    copy_sources(repo)
    params = merge(yaml.safe_load((repo / "params.yaml").read_text()), override)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny"], repo)
    return repo


def resolve(repo: Path) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """tests/test_dvc_deps.py's ``stages()`` for ``repo`` (name -> cmd, deps, params, in the order
    DVC lists them, which runs each stage after its inputs), and every stage's outs."""
    from dvc.repo import Repo

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dvc_deps, "ROOT", repo)
        mp.chdir(repo)  # stage names relative to the repo: "prepare@digits", not a path to dvc.yaml
        stages = dvc_deps.stages()
        with Repo(str(repo)) as dvc:
            outs = {s.addressing: [str(o.def_path) for o in s.outs] for s in dvc.index.stages}
    return stages, outs


def moved_under(argv: list[str], root: Path) -> list[str]:
    """``argv`` with the value of every ``--x value`` but the run's identity moved under ``root``."""
    moved = list(argv)
    for i in range(1, len(argv)):
        flag, value = argv[i - 1], argv[i]
        if flag.startswith("--") and not value.startswith("--") and flag not in IDENTITY_ARGS:
            assert not Path(value).is_absolute(), f"{flag} {value}: dvc.yaml paths are relative to the repo"
            moved[i] = str(root / value)
    left = [v for flag, v in zip(moved, moved[1:]) if flag.startswith("--") and "/" in v
            and not v.startswith(str(root))]
    assert not left, f"paths not moved under {root}: {left} in {argv}"
    return moved


def stage_argv(cmd: str, root: Path) -> list[str]:
    """A resolved cmd without its leading ``python``, every path under ``root``."""
    argv = shlex.split(cmd)
    assert argv[0] == "python", cmd
    return moved_under(argv[1:], root)


def script_of(stage: dict) -> str:
    return Path(shlex.split(stage["cmd"])[1]).stem


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict[str, dict], dict[str, list[str]]]:
    repo = tiny_copy(tmp_path_factory.mktemp("repo"), TINY)
    stages, outs = resolve(repo)
    return repo, stages, outs


# ---------------------------------------------------------------------------------------------
# 1. Every path is an argument: the pipeline moved under a temporary root writes nothing else


def file_tree(repo: Path) -> dict[str, tuple[int, int] | None]:
    """relative path -> (mtime_ns, size) of every file, None for every folder, outside git's and
    DVC's own scratch folders and Python's caches."""
    found = {}
    for folder, dirs, files in os.walk(repo):
        rel = Path(folder).relative_to(repo)
        dirs[:] = [d for d in dirs if d not in UNTRACKED and (rel / d).as_posix() != ".dvc/tmp"]
        for d in dirs:
            found[(rel / d).as_posix()] = None
        for f in files:
            stat = (Path(folder) / f).lstat()
            found[(rel / f).as_posix()] = (stat.st_mtime_ns, stat.st_size)
    return found


@pytest.mark.slow
def test_stages_write_only_under_the_roots_their_cmd_names(tiny, tmp_path):
    """Run every stage's command as dvc.yaml resolves it, each path moved under a temporary root T
    outside the repository: every stage succeeds, writes each of its declared outs under T, and
    nothing in the repository is created, changed or removed (no hard-coded path in saln/ or
    stages/)."""
    repo, stages, outs = tiny
    root = tmp_path / "T"
    assert {script_of(s) for s in stages.values()} == set(STAGE_SCRIPTS) | {"validate"}
    before = file_tree(repo)
    for name, stage in stages.items():
        argv = [sys.executable, *stage_argv(stage["cmd"], root)]
        done = subprocess.run(argv, cwd=repo, capture_output=True, text=True)
        assert done.returncode == 0, f"stage {name} failed: {shlex.join(argv)}\n{done.stderr[-3000:]}"
        missing = [o for o in outs[name] if not (root / o).exists()]
        assert not missing, f"stage {name} did not write {missing} under {root}"
    after = file_tree(repo)
    created = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not created and not removed and not changed, \
        f"written in the repository, not under T: created {created}, changed {changed}, removed {removed}"
    metrics = json.loads((root / f"results/train/digits/saln/seed0/lr{LR:g}/metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["lr"] == LR
    assert "| saln |" in (root / "reports/metrics.md").read_text()


# ---------------------------------------------------------------------------------------------
# 2. Each stage declares exactly the params it reads


class Reads:
    """The dotted keys of params.yaml read by one stage; ``paused`` while the whole mapping is
    hashed into a checkpoint key (that guards a resume, it does not steer the run)."""

    def __init__(self):
        self.keys: set[str] = set()
        self.paused = 0

    def quiet(self, fn):
        def wrapper(*args, **kwargs):
            self.paused += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.paused -= 1

        return wrapper


class RecordingParams(dict):
    """A params block that records what is read from it into ``reads``: a leaf value read by
    ``[]``, ``get`` or ``in`` (a missing key too: its absence is read); a nested block only when
    read whole (iterated, or its keys, values or items listed), which reads every key under it.
    Stepping into a nested block to read one of its keys reads only that key."""

    def __init__(self, data: dict, path: str, reads: Reads):
        super().__init__({k: RecordingParams(v, self._join(path, k), reads) if isinstance(v, dict) else v
                          for k, v in data.items()})
        self._path, self._reads = path, reads

    @staticmethod
    def _join(path: str, key) -> str:
        return f"{path}.{key}" if path else str(key)

    def _read(self, key) -> None:
        if self._reads.paused:
            return
        value = dict.get(self, key)
        if isinstance(value, RecordingParams):
            return  # stepping into a block: what counts is what is read inside it
        self._reads.keys.add(self._join(self._path, key))

    def _read_all(self) -> None:
        if self._reads.paused:
            return
        if not dict.__len__(self) and self._path:
            self._reads.keys.add(self._path)
        for key, value in dict.items(self):
            if isinstance(value, RecordingParams):
                value._read_all()
            else:
                self._reads.keys.add(self._join(self._path, key))

    def __getitem__(self, key):
        self._read(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self._read(key)
        return dict.get(self, key, default)

    def __contains__(self, key):
        self._read(key)
        return dict.__contains__(self, key)

    def __iter__(self):
        self._read_all()
        return dict.__iter__(self)

    def keys(self):
        self._read_all()
        return dict.keys(self)

    def values(self):
        self._read_all()
        return dict.values(self)

    def items(self):
        self._read_all()
        return dict.items(self)

    def copy(self):
        self._read_all()
        return dict(dict.items(self))


def test_recording_params_counts_reads_as_the_contract_means():
    """The recorder itself: leaf reads, absent keys, whole blocks; json.dumps of a dict subclass
    goes through its items(), which is why the checkpoint key is hashed with recording paused."""
    reads = Reads()
    params = RecordingParams({"a": {"x": 1, "y": {"z": 2}, "e": {}}, "b": [1], "c": {"d": 3}}, "", reads)
    assert params["a"]["x"] == 1 and params.get("b") == [1] and "nope" not in params["c"]
    assert reads.keys == {"a.x", "b", "c.nope"}
    reads.keys.clear()
    assert dict(params["a"]) == {"x": 1, "y": {"z": 2}, "e": {}}
    assert reads.keys == {"a.x", "a.y.z", "a.e"}
    reads.keys.clear()
    json.dumps(params)
    assert reads.keys == {"a.x", "a.y.z", "a.e", "b", "c.d"}
    reads.keys.clear()
    reads.quiet(json.dumps)(params, sort_keys=True)
    assert reads.keys == set()


def covered(key: str, declared: list[str]) -> bool:
    return any(key == d or key.startswith(d + ".") for d in declared)


@pytest.fixture(scope="module")
def params_read(tiny, tmp_path_factory) -> dict[str, tuple[str, list[str], set[str]]]:
    """Run every stage but validate in this process, in DVC's order, each path under a temporary
    root: script -> (stage name, its declared params, the keys it read)."""
    import torch

    repo, stages, _ = tiny
    root = tmp_path_factory.mktemp("T")
    found = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, stage in stages.items():
            script, *args = stage_argv(stage["cmd"], root)
            if Path(script).stem == "validate":
                continue
            reads = Reads()
            load = saln.config.load_params

            def recording_load(path=saln.config.PARAMS_FILE, _reads=reads, _load=load):
                return RecordingParams(_load(path), "", _reads)

            with pytest.MonkeyPatch.context() as mp:
                for module in (saln.config, saln.launch):
                    mp.setattr(module, "load_params", recording_load)
                quiet_key = reads.quiet(saln.checkpoint.run_key)
                for module in (saln.checkpoint, saln.launch):  # stages/reference.py imports it at run time
                    mp.setattr(module, "run_key", quiet_key)
                mp.chdir(repo)
                mp.syspath_prepend(str(ROOT / "stages"))
                mp.setattr(sys, "argv", [script, *args])
                try:
                    runpy.run_path(str(ROOT / script), run_name="__main__")
                except SystemExit as exit:
                    assert not exit.code, f"stage {name} exited with {exit.code}"
            found[Path(script).stem] = (name, stage["params"], reads.keys)
    finally:
        torch.set_num_threads(threads)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("script", STAGE_SCRIPTS)
def test_a_stage_declares_exactly_the_params_it_reads(params_read, script):
    """Every key the script reads lies under a key of its ``params:`` in dvc.yaml (else a change to
    it serves stale results), and every declared key has a read under it (else a change to it
    reruns the stage for nothing)."""
    assert set(params_read) == set(STAGE_SCRIPTS)
    name, declared, read = params_read[script]
    undeclared = sorted(k for k in read if not covered(k, declared))
    unread = sorted(d for d in declared if not any(covered(k, [d]) for k in read))
    assert not undeclared and not unread, \
        f"stage {name}: reads undeclared {undeclared}; declares but never reads {unread}"


# ---------------------------------------------------------------------------------------------
# 3. README "Adding a selector": a method in an existing family needs its class and a listing

FIRST_K = '''

@register("first_k")
class FirstK(Selector):
    """The first ``keep`` images of the batch, whatever they show."""

    def select(self, batch: SelectionBatch) -> torch.Tensor:
        return torch.arange(batch.keep, device=batch.indices.device)
'''


@pytest.mark.slow
def test_a_new_selector_in_an_existing_family_trains_as_the_readme_says(tmp_path):
    """Following README's steps for a method in an existing family (the class, registered, in
    saln/selection/baselines.py; its name in train.methods.baselines) and nothing else: dvc.yaml's
    deps check still passes, DVC makes it a train_baselines run, and `dvc repro` trains it with it."""
    override = merge(json.loads(json.dumps(TINY)), {"train": {"methods": {
        "baselines": ["first_k"], "spectral": [], "jest": [], "uncertainty": [], "prune": []}}})
    repo = tiny_copy(tmp_path / "repo", override)
    module = repo / "saln/selection/baselines.py"
    module.write_text(module.read_text() + FIRST_K)
    run(["git", "commit", "-qam", "first_k"], repo)

    stages, _ = resolve(repo)
    assert "train_baselines@digits-first_k-0" in stages
    with pytest.MonkeyPatch.context() as mp:  # tests/test_dvc_deps.py, pointed at the copy
        mp.setattr(dvc_deps, "ROOT", repo)
        mp.chdir(repo)
        dvc_deps.test_no_directory_deps_on_code()
        dvc_deps.test_the_library_has_no_import_cycle()
        for name in stages:
            dvc_deps.test_stage_code_deps_are_its_import_closure(name)
            dvc_deps.test_stages_depend_on_the_folders_of_the_files_they_read(name)

    out = run(["dvc", "repro", "train_baselines@digits-first_k-0"], repo)
    assert "Running stage 'train_baselines@digits-first_k-0'" in out
    metrics = json.loads((repo / f"results/train/digits/first_k/seed0/lr{LR:g}/metrics.json").read_text())
    keep = int(TINY["train"]["batch_size"] * (1 - yaml.safe_load((repo / "params.yaml").read_text())
                                                   ["train"]["filter_ratio"]))
    assert metrics["keep_per_batch"] == keep and metrics["images_backprop"] == keep * metrics["steps"]
    with np.load(repo / f"results/models/digits/first_k/seed0/lr{LR:g}/selections.npz") as logged:
        kept = logged["kept"]
    assert len(kept) and (kept[:, :keep].all() and not kept[:, keep:].any())  # its own choice: the first k


TOY_FAMILY = '''"""A toy selector family: the last ``keep`` images of each batch."""

import torch

from saln.selection.base import SelectionBatch, Selector
from saln.selection.registry import register


@register("last_k")
class LastK(Selector):
    def select(self, batch: SelectionBatch) -> torch.Tensor:
        return torch.arange(len(batch) - batch.keep, len(batch), device=batch.indices.device)
'''


def add_toy_family(repo: Path) -> None:
    """README's steps for a new family, all but the code deps: the module, imported (and filed as a
    family) in saln/selection/all.py, a stage script like train_baselines.py, and a train_toy stage
    in dvc.yaml copied from train_baselines with its own script (its key in params.yaml is set by
    the caller)."""
    (repo / "saln/selection/toy.py").write_text(TOY_FAMILY)
    families = repo / "saln/selection/all.py"
    text = families.read_text()
    for old, new in [("import baselines, jest, prune, spectral, uncertainty",
                      "import baselines, jest, prune, spectral, toy, uncertainty"),
                     ("(baselines, spectral, jest, uncertainty, prune)",
                      "(baselines, spectral, jest, uncertainty, prune, toy)")]:
        assert old in text, f"saln/selection/all.py no longer has {old!r}: update this test"
        text = text.replace(old, new)
    families.write_text(text)
    script = (repo / "stages/train_baselines.py").read_text()
    script = (script.replace("from saln.selection import baselines", "from saln.selection import toy")
              .replace("parse_args(), baselines)", "parse_args(), toy)"))
    assert "toy)" in script
    (repo / "stages/train_toy.py").write_text(script)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    stage = json.loads(json.dumps(pipeline["stages"]["train_baselines"]))
    stage["matrix"]["method"] = "${train.methods.toy}"
    stage["cmd"] = stage["cmd"].replace("stages/train_baselines.py", "stages/train_toy.py")
    stage["deps"] = [d.replace("stages/train_baselines.py", "stages/train_toy.py") for d in stage["deps"]]
    pipeline["stages"]["train_toy"] = stage
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))


def code_dep_errors(repo: Path, stages: dict) -> dict[str, str]:
    """stage -> tests/test_dvc_deps.py's message, for each stage whose code deps it rejects."""
    errors = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dvc_deps, "ROOT", repo)
        mp.chdir(repo)
        for name in stages:
            try:
                dvc_deps.test_stage_code_deps_are_its_import_closure(name)
            except AssertionError as err:
                errors[name] = str(err).splitlines()[0]
        dvc_deps.test_no_directory_deps_on_code()
        dvc_deps.test_the_library_has_no_import_cycle()
        for name in stages:
            dvc_deps.test_stages_depend_on_the_folders_of_the_files_they_read(name)
    return errors


@pytest.mark.slow
def test_a_new_selector_family_trains_as_the_readme_says(tmp_path):
    """README's steps for a new family: tests/test_dvc_deps.py names every code dep to fix (the new
    module in each stage importing every family, the new stage's own), and once they are fixed
    `dvc repro` trains the new family's method with it."""
    override = merge(json.loads(json.dumps(TINY)), {"train": {"methods": {
        "baselines": [], "spectral": [], "jest": [], "uncertainty": [], "prune": [], "toy": ["last_k"]}}})
    repo = tiny_copy(tmp_path / "repo", override)
    add_toy_family(repo)

    stages, _ = resolve(repo)
    run_name = "train_toy@digits-last_k-0"
    assert run_name in stages
    all_families = ("validate", "diagnostics", "summary", "report")  # the stages importing selection/all.py
    everyone = [n for n, s in stages.items() if script_of(s) in all_families]
    expected = {n: f"stage {n}: missing deps ['saln/selection/toy.py'], extra deps []" for n in everyone}
    expected[run_name] = (f"stage {run_name}: missing deps ['saln/selection/toy.py'], "
                          "extra deps ['saln/selection/baselines.py']")
    assert code_dep_errors(repo, stages) == expected

    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    for name, stage in pipeline["stages"].items():
        if name == "train_toy":
            stage["deps"] = [d.replace("selection/baselines.py", "selection/toy.py") for d in stage["deps"]]
        elif name in all_families:
            stage["deps"].append("saln/selection/toy.py")
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    stages, _ = resolve(repo)
    assert code_dep_errors(repo, stages) == {}
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "toy family"], repo)

    out = run(["dvc", "repro", run_name], repo)
    assert f"Running stage '{run_name}'" in out
    metrics = json.loads((repo / f"results/train/digits/last_k/seed0/lr{LR:g}/metrics.json").read_text())
    keep = metrics["keep_per_batch"]
    assert 0 < keep < metrics["batch_size"] and metrics["images_backprop"] == keep * metrics["steps"]
    with np.load(repo / f"results/models/digits/last_k/seed0/lr{LR:g}/selections.npz") as logged:
        kept = logged["kept"]
    assert len(kept) and (kept[:, -keep:].all() and not kept[:, :-keep].any())  # its own choice: the last k
