"""The official AOT test-time transform: size rule, cubic resize, normalisation, mask resize."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

MAX_LONG_EDGE = 1040.0  # 800 * 1.3, the official TEST_MAX_LONG_EDGE
STRIDE = 16
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def target_size(height: int, width: int, align_corners: bool) -> tuple[int, int]:
    """Network input size for a frame (``MultiRestrictSize`` with the test settings).

    The long edge is limited to 1040 pixels; each side is then moved to the nearest
    ``16k + 1`` (align_corners models) or ``16k`` (Swin models), rounding half to even.
    """
    scale = MAX_LONG_EDGE / max(height, width) if max(height, width) > MAX_LONG_EDGE else 1.0
    sides = []
    for n in (int(height * scale), int(width * scale)):
        if align_corners and (n - 1) % STRIDE != 0:
            n = int(np.around((n - 1) / STRIDE) * STRIDE + 1)
        elif not align_corners and n % STRIDE != 0:
            n = int(np.around(n / STRIDE) * STRIDE)
        sides.append(n)
    return sides[0], sides[1]


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame at the network input size (bicubic on uint8, as the official transform)."""
    if frame.shape[:2] == size:
        return frame
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def normalize(frame: np.ndarray) -> torch.Tensor:
    """``1 x 3 x H x W`` float32 network input from an RGB uint8 frame (arithmetic in float64)."""
    x = frame / 255.0
    x -= MEAN
    x /= STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).unsqueeze(0).float()


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Id map ``(1, 1, H, W)`` float resized with PyTorch's legacy nearest rule."""
    return F.interpolate(mask, size=size, mode="nearest")
