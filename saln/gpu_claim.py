"""One GPU per process when several are visible: ``claim_gpu()``, called before CUDA starts.

``dvc queue start --jobs N`` gives its workers no index, so without a claim every training run of a
queued sweep lands on GPU 0. A stage calls ``claim_gpu(device, world_size)`` first thing (before
anything touches ``torch.cuda``): when more than one GPU is visible and the user has not pinned one,
it takes an exclusive, non-blocking ``fcntl.flock`` on one lock file per GPU, in a directory every
workspace of the user shares (queue workers run in temporary copies of the repo, so a path inside
the workspace would not be shared), and sets ``CUDA_VISIBLE_DEVICES`` to the GPU it got.

Why ``flock``: the lock belongs to the open file, and the kernel drops it when the last descriptor
of that file closes, which includes the process dying by SIGKILL, an OOM kill or a crash. So a
killed worker leaves no stale lock (the lock file stays on disk but is free; nothing to clean up),
unlike pid files or lock directories. The descriptor is kept open for the life of the process and
marked inheritable, so ``os.execv`` (``saln.distributed.relaunch_under_torchrun``) keeps the claim.

When every GPU is taken, the process waits (one line on stderr, then a check every ``poll_s``
seconds) rather than sharing the least-loaded GPU: two runs on one GPU compete for its memory (an
out-of-memory failure at the paper's sizes) and slow each other down, which corrupts the timings the
runs report. Waiting caps the concurrency of a queue at the number of GPUs, which is what one wants.

What is claimed nothing (returns None, environment untouched):
- ``device`` is ``"cpu"``;
- no GPU (no ``nvidia-smi``, or it lists none), or only one is visible: there is nothing to choose;
- ``CUDA_VISIBLE_DEVICES`` names exactly one GPU (pinned by the user or a scheduler), or is empty;
- the process is a torchrun worker, or a descendant of a claiming process (``SALN_GPU_CLAIMED``):
  the parent's claim, inherited through ``CUDA_VISIBLE_DEVICES``, covers it.
``CUDA_VISIBLE_DEVICES`` set to several GPUs means "choose among these".

GPUs are counted with ``nvidia-smi -L`` in a child process, never in this one: the CUDA driver reads
``CUDA_VISIBLE_DEVICES`` once, when it initialises, so counting through the CUDA runtime here would
freeze the very variable we are about to set. ``torch.cuda.device_count()`` first asks NVML (which
does not initialise CUDA) but silently falls back to ``cudaGetDeviceCount`` (which does) whenever
NVML fails; and ``torch.cuda.is_available()`` always initialises the driver. ``nvidia-smi -L`` also
gives each GPU's UUID, which this module puts in ``CUDA_VISIBLE_DEVICES``: unlike an index it means
the same GPU whatever ``CUDA_DEVICE_ORDER`` is.

Environment:
- ``SALN_GPU_LOCK_DIR``: the lock directory (default ``<tempdir>/saln-gpu-locks-<uid>``, e.g.
  ``/tmp/saln-gpu-locks-1000``; point several users at one shared directory to coordinate them).
- ``SALN_GPU_COUNT``: pretend this many GPUs (indices 0..N-1) instead of asking ``nvidia-smi``
  (tests; machines whose driver has no ``nvidia-smi``).
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from saln.errors import SalnError

LOCK_DIR_ENV = "SALN_GPU_LOCK_DIR"
COUNT_ENV = "SALN_GPU_COUNT"
CLAIMED_ENV = "SALN_GPU_CLAIMED"  # set by a claiming process; its children inherit it and claim nothing
TORCHRUN_ENV = ("LOCAL_RANK", "WORLD_SIZE")  # set by torchrun in each worker
POLL_S = 10.0
NVIDIA_SMI_TIMEOUT_S = 60
_GPU_LINE = re.compile(r"^GPU (\d+):.*\(UUID: (GPU-[0-9A-Za-z-]+)\)")

_held: dict[int, int] = {}  # GPU index -> open, locked descriptor, for the life of the process
_claimed: int | None = None


@dataclass(frozen=True)
class Gpu:
    index: int  # as nvidia-smi numbers it (PCI bus order), or 0..N-1 under SALN_GPU_COUNT
    uuid: str | None = None
    visible: str = ""  # what CUDA_VISIBLE_DEVICES gets to select this GPU alone

    @property
    def lock_name(self) -> str:
        return f"gpu{self.index}.lock"


def claim_gpu(device: str = "auto", world_size: int = 1, *, gpu_count: int | None = None,
              lock_dir: str | os.PathLike | None = None, poll_s: float = POLL_S,
              timeout_s: float | None = None) -> int | None:
    """Claim ``world_size`` free GPUs for this process and make them its only visible ones.

    Returns the index (as ``nvidia-smi`` numbers it) of the first GPU claimed, or None when it
    claimed nothing (see the module docstring). Waits while too few GPUs are free; raises
    ``SalnError`` after ``timeout_s`` seconds (default: wait forever). Calling it again in the same
    process returns the first answer. ``gpu_count`` and ``lock_dir`` override ``SALN_GPU_COUNT``
    and ``SALN_GPU_LOCK_DIR``.
    """
    global _claimed
    if _held:
        return _claimed
    if device == "cpu" or os.environ.get(CLAIMED_ENV) or any(name in os.environ for name in TORCHRUN_ENV):
        return None
    _check_cuda_not_started()
    candidates = _candidates(_discover(gpu_count))
    if len(candidates) < 2:
        return None
    if world_size > len(candidates):
        _say(f"train.world_size {world_size} needs more GPUs than the {len(candidates)} visible; claiming none")
        return None
    directory = _lock_dir(lock_dir)
    start, announced = time.monotonic(), False
    while True:
        got = _try_lock(candidates, world_size, directory)
        if got:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpu.visible for gpu in got)
            os.environ[CLAIMED_ENV] = ",".join(str(gpu.index) for gpu in got)
            _claimed = got[0].index
            waited = time.monotonic() - start
            _say(f"claimed GPU {os.environ[CLAIMED_ENV]} (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}"
                 + (f", after waiting {waited:.0f} s" if announced else "") + f"; locks in {directory})")
            return _claimed
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise SalnError(f"no {world_size} free GPU(s) of {len(candidates)} after {timeout_s:g} s "
                            f"(held by: {_holders(candidates, directory)}; locks in {directory})")
        if not announced:
            _say(f"all {len(candidates)} GPUs are claimed by other runs (held by: {_holders(candidates, directory)});"
                 f" waiting for {world_size} to free up, checking every {poll_s:g} s (locks in {directory})")
            announced = True
        time.sleep(poll_s)


# ---------------------------------------------------------------------------------------------
# Discovery


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """The whole GPUs of ``nvidia-smi -L`` output (MIG slices, indented under their GPU, are skipped)."""
    gpus = []
    for line in text.splitlines():
        match = _GPU_LINE.match(line)
        if match:
            gpus.append(Gpu(int(match.group(1)), match.group(2), match.group(2)))
    return gpus


def _discover(gpu_count: int | None) -> list[Gpu]:
    if gpu_count is None and os.environ.get(COUNT_ENV, "").strip():
        try:
            gpu_count = int(os.environ[COUNT_ENV])
        except ValueError:
            raise SalnError(f"{COUNT_ENV} must be a whole number of GPUs, got {os.environ[COUNT_ENV]!r}") from None
    if gpu_count is not None:
        return [Gpu(i, None, str(i)) for i in range(gpu_count)]
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):  # no driver tools, or a hung driver: act as if no GPU
        return []
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else []


def _candidates(gpus: list[Gpu]) -> list[Gpu]:
    """The GPUs this process may choose from: all, or those CUDA_VISIBLE_DEVICES lists (as written)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if len(entries) < 2:
        return []  # pinned to one GPU, or none (an empty value hides every GPU)
    by_index = {gpu.index: gpu for gpu in gpus}
    chosen = []
    for entry in entries:
        if entry.isdigit() and int(entry) in by_index:
            # An index as CUDA reads it (CUDA_DEVICE_ORDER); the lock assumes nvidia-smi's order,
            # which is CUDA's with CUDA_DEVICE_ORDER=PCI_BUS_ID and on machines of one GPU model.
            chosen.append(Gpu(int(entry), by_index[int(entry)].uuid, entry))
            continue
        match = [gpu for gpu in gpus if gpu.uuid and entry.startswith("GPU-") and gpu.uuid.startswith(entry)]
        if len(match) != 1:
            _say(f"cannot tell which GPU CUDA_VISIBLE_DEVICES entry {entry!r} is; claiming none")
            return []
        chosen.append(Gpu(match[0].index, match[0].uuid, entry))
    return chosen


def _check_cuda_not_started() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise SalnError("claim_gpu() must run before CUDA is initialised (CUDA_VISIBLE_DEVICES is read once, "
                        "at initialisation): call it before anything touches torch.cuda")


# ---------------------------------------------------------------------------------------------
# Locks


def default_lock_dir() -> Path:
    """``$SALN_GPU_LOCK_DIR``, else ``<tempdir>/saln-gpu-locks-<uid>``.

    Not ``$XDG_RUNTIME_DIR``: logind deletes it when the user's last session ends, while detached
    queue workers keep running, and a later login would recreate it empty (new lock files, so a
    second claim of a GPU still in use).
    """
    override = os.environ.get(LOCK_DIR_ENV, "").strip()
    if override:
        return Path(override)
    return Path(tempfile.gettempdir()) / f"saln-gpu-locks-{os.getuid()}"


def _lock_dir(lock_dir) -> Path:
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise SalnError(f"cannot create the GPU lock directory {directory}: {err} (set {LOCK_DIR_ENV})") from None
    if lock_dir is None and LOCK_DIR_ENV not in os.environ and directory.stat().st_uid != os.getuid():
        raise SalnError(f"GPU lock directory {directory} belongs to another user: set {LOCK_DIR_ENV}")
    return directory


def _open_lock(path: Path) -> int:
    """A descriptor of the lock file, created if need be; read-only where another user owns it
    (flock does not care how the file was opened)."""
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_RDWR, 0o666)
    except PermissionError:
        return os.open(path, flags | os.O_RDONLY)


def _lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock of ``path``, or None if another process holds it."""
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _try_lock(candidates: list[Gpu], count: int, directory: Path) -> list[Gpu]:
    """``count`` GPUs locked for good, or none (partial claims are released: no hold-and-wait)."""
    got: list[tuple[Gpu, int]] = []
    for gpu in candidates:
        fd = _lock(directory / gpu.lock_name)
        if fd is None:
            continue
        got.append((gpu, fd))
        if len(got) == count:
            break
    if len(got) < count:
        for _, fd in got:
            os.close(fd)
        return []
    for gpu, fd in got:
        os.set_inheritable(fd, True)  # survives os.execv (the torchrun relaunch); subprocess still closes it
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {os.getcwd()}\n".encode(), 0)
        except OSError:  # read-only descriptor (a shared directory): the note is optional
            pass
        _held[gpu.index] = fd
    return [gpu for gpu, _ in got]


def _holders(candidates: list[Gpu], directory: Path) -> str:
    """'GPU i: pid p' for each candidate, from the notes claimers leave in the lock files."""
    notes = []
    for gpu in candidates:
        try:
            note = (directory / gpu.lock_name).read_text().split()
        except OSError:
            note = []
        notes.append(f"GPU {gpu.index}: pid {note[0]}" if note else f"GPU {gpu.index}: ?")
    return ", ".join(notes)


def _release() -> None:
    """Close the held descriptors (drops the locks) and forget the claim. For tests; a stage never
    needs it, the kernel does it when the process ends."""
    global _claimed
    for fd in _held.values():
        os.close(fd)
    _held.clear()
    _claimed = None


def _say(message: str) -> None:
    print(f"gpu_claim: {message}", file=sys.stderr, flush=True)
