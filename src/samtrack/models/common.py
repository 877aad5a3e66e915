"""Checks and device handling shared by every model wrapper."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
import time

import numpy as np
import torch

from samtrack.errors import InputError


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else must name an available device."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda requested but no CUDA GPU is available: use device 'cpu' or 'auto'")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("device mps requested but MPS is not available: use device 'cpu' or 'auto'")
    return resolved


PRECISIONS = ("fp32", "bf16", "fp16")
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    """A resolved precision (``fp32``, ``bf16`` or ``fp16``), or an InputError."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of auto, {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


# bf16 must beat fp32 by this factor in the probe before `auto` picks it.
BF16_MIN_SPEEDUP = 1.25


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as info:
            return set(next((line for line in info if line.startswith("flags")), "").split())
    except OSError:
        return set()


@functools.cache
def has_amx() -> bool:
    """Whether this CPU exposes AMX bf16 tile instructions (oneDNN and PyTorch's fused kernels use them)."""
    return "AMX" in torch.backends.cpu.get_cpu_capability().upper() or "amx_bf16" in _cpu_flags()


def best_matmul_seconds(dtype: torch.dtype, n: int = 1024, repeats: int = 3) -> float:
    """Seconds of the fastest of `repeats` n×n matrix products in `dtype` (all threads), after one warm-up."""
    a = torch.randn(n, n).to(dtype)
    a @ a
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def native_bf16() -> bool:
    """Whether bf16 is the faster precision on this CPU: it has bf16 instructions (AVX512-BF16 or AMX)
    and its bf16 matrix products run at least ``BF16_MIN_SPEEDUP`` times as fast as fp32 ones.

    The instructions alone do not say it: on an earlier host of this project (AVX512-BF16) DeAOT ran
    1.4–1.8× faster in bf16, but on a Xeon with AVX512-BF16 whose AMX units the VM does not expose, bf16
    products ran at half the fp32 rate (140 vs 268 GFLOP/s) and DeAOT and segment-everything ran
    1.4–1.5× slower in bf16. So the speed is measured, once per process (a 1024² product each way,
    tens of milliseconds).
    """
    has_instructions = "AMX" in torch.backends.cpu.get_cpu_capability().upper() or bool(
        {"avx512_bf16", "amx_bf16"} & _cpu_flags())
    if not has_instructions:
        return False
    return best_matmul_seconds(torch.float32) >= BF16_MIN_SPEEDUP * best_matmul_seconds(torch.bfloat16)


def resolve_precision(precision: str, device: torch.device) -> str:
    """What ``auto`` means on a device, as SAM-Track runs (fp16 autocast on GPUs): fp16 on CUDA,
    bf16 on CPUs where bf16 is faster (:func:`native_bf16`), fp32 otherwise. Explicit precisions are
    returned as they are."""
    if precision == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if device.type == "cpu" and native_bf16() else "fp32"
    return check_precision(precision)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for a resolved precision (``fp32``: none, full precision)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


@functools.cache
def keep_freed_cpu_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the kernel.

    Eager inference allocates and frees feature maps of a few MB to a few hundred MB per layer. By
    default glibc serves blocks above its mmap threshold (at most 32 MB) with fresh ``mmap`` calls and
    returns them on free, so every new one is faulted in page by page again: a residual add of two
    480p ResNet maps takes 29 ms instead of 9, and a SAM ViT-B encoder pass at 1024 px 8.3 s instead
    of 6.0. Here no block is served by ``mmap`` (every block comes from the heap and is reused), and
    up to 1 GB of free memory at the top of the heap is kept rather than trimmed. Returns whether the
    allocator took the settings (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # not glibc
        return False


def check_frame(frame: np.ndarray, size: tuple[int, int] | None = None) -> None:
    """A frame must be RGB uint8 H×W×3, and (for a tracker) keep the size of the video's first frame."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}"
        raise InputError(f"a frame must be an RGB uint8 array of shape H x W x 3, got {got}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"the frame is empty (shape {frame.shape})")
    if size is not None and frame.shape[:2] != size:
        raise InputError(f"frame size changed from {size[0]}x{size[1]} to {frame.shape[0]}x{frame.shape[1]}; "
                         "every frame of a video must have the same size (call reset() before tracking another "
                         "video)")


def check_id_mask(mask: np.ndarray, shape: tuple[int, int]) -> None:
    """An id mask must be uint8 and of its frame's size."""
    if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or mask.shape != shape:
        got = f"{type(mask).__name__} {getattr(mask, 'dtype', '')} {getattr(mask, 'shape', '')}"
        raise InputError(f"an id mask must be a uint8 array of the frame's size {shape}, got {got}")
