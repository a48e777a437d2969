"""saln.gpu_claim on CPU: the GPU count is injected (SALN_GPU_COUNT or gpu_count=) and the locks
live in a temporary directory, so real processes compete for pretend GPUs with real flocks."""

import os
import selectors
import signal
import subprocess
import sys

import pytest

from saln import gpu_claim
from saln.errors import SalnError
from saln.gpu_claim import claim_gpu, parse_nvidia_smi
from tests.conftest import ROOT

# A claimer: claims, prints "<index> <CUDA_VISIBLE_DEVICES>", then holds its claim until stdin closes.
# With "exec" as third argument it then replaces itself (os.execv, as the torchrun relaunch does).
CLAIMER = """
import os, sys
from saln.gpu_claim import claim_gpu
timeout = float(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "-" else None
got = claim_gpu(world_size=int(sys.argv[1]), poll_s=0.05, timeout_s=timeout)
print(got, os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
if len(sys.argv) > 3 and sys.argv[3] == "exec":
    os.execv(sys.executable, [sys.executable, "-c", "import sys; print('exec', flush=True); sys.stdin.read()"])
sys.stdin.read()
"""
CLEARED = ("CUDA_VISIBLE_DEVICES", gpu_claim.CLAIMED_ENV, gpu_claim.COUNT_ENV, *gpu_claim.TORCHRUN_ENV)


def claimer_env(lock_dir, count: int, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return {**env, "PYTHONPATH": str(ROOT), gpu_claim.LOCK_DIR_ENV: str(lock_dir),
            gpu_claim.COUNT_ENV: str(count), **extra}


def start(env: dict, world_size: int = 1, timeout: float | None = None, then: str = "") -> subprocess.Popen:
    args = [sys.executable, "-c", CLAIMER, str(world_size), "-" if timeout is None else str(timeout)]
    return subprocess.Popen(args + ([then] if then else []), env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(proc: subprocess.Popen, timeout: float = 30.0) -> str | None:
    """The claimer's next stdout line, or None if none comes within ``timeout`` seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return None
    return proc.stdout.readline().strip()


def claimed(proc: subprocess.Popen) -> tuple[int, str]:
    line = first_line(proc)
    assert line, f"claimer printed nothing; stderr: {proc.stderr.read() if proc.poll() is not None else '(running)'}"
    index, visible = line.split()
    return int(index), visible


def finish(*procs: subprocess.Popen) -> list[str]:
    """Let every claimer exit (close stdin) and return their stderr."""
    errs = []
    for proc in procs:
        if proc.poll() is None:
            proc.stdin.close()
        proc.wait(timeout=30)
        errs.append(proc.stderr.read())
    return errs


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No GPU variables inherited from the machine running the tests; locks in tmp_path."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(gpu_claim.LOCK_DIR_ENV, str(tmp_path))
    yield tmp_path
    gpu_claim._release()


def test_two_processes_claim_different_gpus(tmp_path, procs):
    env = claimer_env(tmp_path, 2)
    procs += [start(env), start(env)]
    (a, a_visible), (b, b_visible) = claimed(procs[0]), claimed(procs[1])
    assert {a, b} == {0, 1}
    assert (a_visible, b_visible) == (str(a), str(b))
    errs = finish(*procs)
    assert all("claimed GPU" in err for err in errs), errs


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path, procs):
    """flock is released by the kernel when the holder dies, even by SIGKILL: a waiting claimer gets
    the dead one's GPU; the lock file stays on disk, unlocked."""
    env = claimer_env(tmp_path, 2)
    procs += [start(env), start(env)]
    victim_gpu, _ = claimed(procs[0])
    other_gpu, _ = claimed(procs[1])
    waiter = start(env)
    procs.append(waiter)
    assert first_line(waiter, timeout=1.5) is None  # both GPUs taken: it waits
    procs[0].send_signal(signal.SIGKILL)
    assert procs[0].wait(timeout=10) == -signal.SIGKILL
    assert claimed(waiter) == (victim_gpu, str(victim_gpu))
    assert (tmp_path / f"gpu{victim_gpu}.lock").is_file()
    _, waiter_err = finish(procs[1], waiter)
    waiting = [line for line in waiter_err.splitlines() if "waiting for" in line]
    assert len(waiting) == 1 and f"GPU {other_gpu}: pid {procs[1].pid}" in waiting[0], waiter_err
    assert "after waiting" in waiter_err


def test_the_claim_survives_exec(tmp_path, procs):
    """The torchrun relaunch replaces the process with os.execv: the lock must not close with it."""
    env = claimer_env(tmp_path, 2)
    procs.append(start(env, then="exec"))
    gpu, _ = claimed(procs[0])
    assert first_line(procs[0]) == "exec"
    assert gpu_claim._lock(tmp_path / f"gpu{gpu}.lock") is None  # still held after the exec
    finish(procs[0])
    fd = gpu_claim._lock(tmp_path / f"gpu{gpu}.lock")
    assert fd is not None  # and freed when the exec'd process ends
    os.close(fd)


def test_all_gpus_taken_times_out_with_the_holders(tmp_path, procs):
    env = claimer_env(tmp_path, 2)
    procs += [start(env), start(env)]
    claimed(procs[0]), claimed(procs[1])
    late = subprocess.run([sys.executable, "-c", CLAIMER, "1", "0.3"], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert late.returncode != 0
    assert "no 1 free GPU(s) of 2 after 0.3 s" in late.stderr
    assert f"pid {procs[0].pid}" in late.stderr and f"pid {procs[1].pid}" in late.stderr


def test_a_pinned_gpu_is_respected(clean):
    os.environ["CUDA_VISIBLE_DEVICES"] = "2"
    assert claim_gpu(gpu_count=4) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    assert list(clean.iterdir()) == []  # no lock taken
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # every GPU hidden
    assert claim_gpu(gpu_count=4) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_several_visible_gpus_are_chosen_from(clean, procs):
    os.environ["CUDA_VISIBLE_DEVICES"] = "1,3"
    assert claim_gpu(gpu_count=4) == 1
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert os.environ[gpu_claim.CLAIMED_ENV] == "1"
    assert claim_gpu(gpu_count=4) == 1  # a second call returns the claim it holds
    procs.append(start(claimer_env(clean, 4, CUDA_VISIBLE_DEVICES="1,3")))
    assert claimed(procs[0]) == (3, "3")


def test_no_gpu_or_one_gpu_claims_nothing(clean, monkeypatch):
    assert claim_gpu(gpu_count=0) is None
    assert claim_gpu(gpu_count=1) is None
    monkeypatch.setenv("PATH", str(clean))  # no nvidia-smi and no SALN_GPU_COUNT: no GPU
    assert claim_gpu() is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and list(clean.iterdir()) == []


def test_cpu_runs_torchrun_workers_and_children_of_a_claim_claim_nothing(clean, monkeypatch):
    assert claim_gpu("cpu", gpu_count=2) is None
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert claim_gpu(gpu_count=2) is None
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv(gpu_claim.CLAIMED_ENV, "0,1")
    assert claim_gpu(gpu_count=2) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and list(clean.iterdir()) == []


def test_world_size_claims_several_gpus_or_none(clean, procs):
    procs.append(start(claimer_env(clean, 3), world_size=2))
    assert claimed(procs[0]) == (0, "0,1")
    with pytest.raises(SalnError, match="no 2 free GPU"):
        claim_gpu(world_size=2, gpu_count=3, poll_s=0.05, timeout_s=0.2)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert claim_gpu(gpu_count=3) == 2  # the failed claim kept no partial hold on GPU 2


def test_world_size_beyond_the_visible_gpus_claims_nothing(clean):
    assert claim_gpu(world_size=3, gpu_count=2) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


NVIDIA_SMI_L = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaaaaaa-1111-2222-3333-444444444444)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbbbbbb-1111-2222-3333-444444444444)
  MIG 3g.20gb     Device  0: (UUID: MIG-cccccccc-1111-2222-3333-444444444444)
"""


def test_nvidia_smi_output_gives_whole_gpus_and_uuids():
    gpus = parse_nvidia_smi(NVIDIA_SMI_L)
    assert [(g.index, g.visible) for g in gpus] == [(0, "GPU-aaaaaaaa-1111-2222-3333-444444444444"),
                                                   (1, "GPU-bbbbbbbb-1111-2222-3333-444444444444")]
    assert parse_nvidia_smi("No devices were found\n") == []


def test_gpus_found_by_nvidia_smi_are_pinned_by_uuid(clean, monkeypatch):
    fake = clean / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\ncat <<'EOF'\n" + NVIDIA_SMI_L + "EOF\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    busy = gpu_claim._lock(clean / "gpu0.lock")  # GPU 0 taken by someone else
    try:
        assert claim_gpu() == 1
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-bbbbbbbb-1111-2222-3333-444444444444"
    finally:
        os.close(busy)


def test_claiming_after_cuda_started_is_an_error(clean, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(SalnError, match="before CUDA is initialised"):
        claim_gpu(gpu_count=2)


def test_the_default_lock_dir_is_per_user_and_overridable(monkeypatch, tmp_path):
    monkeypatch.delenv(gpu_claim.LOCK_DIR_ENV, raising=False)
    assert gpu_claim.default_lock_dir().name == f"saln-gpu-locks-{os.getuid()}"
    monkeypatch.setenv(gpu_claim.LOCK_DIR_ENV, str(tmp_path / "shared"))
    assert gpu_claim.default_lock_dir() == tmp_path / "shared"
