"""Checks and device handling shared by every model wrapper."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys

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


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16 pays off."""
    if "AMX" in torch.backends.cpu.get_cpu_capability().upper():
        return True
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """What ``auto`` means on a device, as SAM-Track runs (fp16 autocast on GPUs): fp16 on CUDA,
    bf16 on CPUs with native bf16, fp32 otherwise. Explicit precisions are returned as they are."""
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
