"""One code path for CPU and CUDA: device choice, bf16 autocast and channels_last only on CUDA."""

from __future__ import annotations

import contextlib
import time

import torch

from saln.errors import SalnError


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise SalnError("train.device is cuda but no CUDA device is visible: set it to auto or cpu")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        torch.backends.cudnn.benchmark = True
    return torch.device(requested)


def autocast(device: torch.device, bf16: bool = True):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device, channels_last: bool = True):
    return torch.channels_last if device.type == "cuda" and channels_last else torch.contiguous_format


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates wall seconds of a device's work (synchronising CUDA at both ends)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, 0.0

    @contextlib.contextmanager
    def __call__(self):
        sync(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            self.seconds += time.perf_counter() - start
