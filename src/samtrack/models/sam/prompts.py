"""Checks and conversions for what users hand the segmenter: frames, clicks, boxes, strokes and masks.

Everything a user can get wrong raises ``InputError`` with a message that says what to pass instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from samtrack.errors import InputError


def as_rgb_frame(frame: np.ndarray | Image.Image) -> np.ndarray:
    """Return the frame as a contiguous RGB ``uint8`` H×W×3 array.

    Accepted: ``uint8`` H×W×3 (RGB) arrays, ``uint8`` H×W×4 arrays (RGBA: the alpha channel is dropped)
    and PIL images (converted to RGB). Grayscale and float arrays are refused: their meaning (a mask? a
    0..1 or 0..255 range?) is ambiguous.
    """
    if isinstance(frame, Image.Image):
        return np.array(frame.convert("RGB"))
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frame must be a numpy uint8 H×W×3 RGB array or a PIL image, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise InputError(
            f"frame must be uint8 RGB (0..255), got dtype {frame.dtype}; "
            "convert it, e.g. (frame * 255).round().astype(np.uint8) for a 0..1 float image"
        )
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(
            f"frame must be H×W×3 RGB, got shape {frame.shape}; "
            "for a grayscale image pass np.repeat(gray[..., None], 3, axis=2)"
        )
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise InputError(f"frame is too small ({frame.shape[1]}×{frame.shape[0]} pixels)")
    # The image processor wraps the array in a tensor, which must be writable (np.asarray(PIL) is not).
    return np.ascontiguousarray(frame) if frame.flags.writeable else frame.copy()


def check_points(
    points: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[int] | np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Validate clicks: N ≥ 1 (x, y) pixel positions inside the frame, labels 1 (positive) or 0 (negative)."""
    pts = np.asarray(points, dtype=np.float64)
    lab = np.asarray(labels)
    if pts.size == 0:
        raise InputError("no clicks given: pass at least one (x, y) point with its label (1 positive, 0 negative)")
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"points must be a list of (x, y) pairs, got an array of shape {pts.shape}")
    if lab.ndim != 1 or len(lab) != len(pts):
        raise InputError(f"got {len(pts)} points but {lab.size} labels: give one label (1 or 0) per point")
    if not np.isin(lab, (0, 1)).all():
        raise InputError(f"labels must be 1 (positive click) or 0 (negative click), got {sorted(set(lab.tolist()))}")
    height, width = size
    outside = ~np.isfinite(pts).all(1) | (pts[:, 0] < 0) | (pts[:, 0] >= width) | (pts[:, 1] < 0) | (pts[:, 1] >= height)
    if outside.any():
        x, y = pts[np.argmax(outside)]
        raise InputError(f"click ({x:g}, {y:g}) is outside the {width}×{height} frame: x must be in [0, {width}), y in [0, {height})")
    return pts, lab.astype(np.int64)


def check_box(box: Sequence[float] | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Validate a box (x0, y0, x1, y1) in pixels: inside the frame, with x0 < x1 and y0 < y1."""
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise InputError(f"box must be four numbers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = b
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area: need x0 < x1 and y0 < y1")
    height, width = size
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise InputError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the {width}×{height} frame")
    return b


def check_mask(mask: np.ndarray, size: tuple[int, int], what: str = "mask") -> np.ndarray:
    """Validate a frame-size mask (nonzero = inside) with at least one pixel; returns it as bool."""
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] in (1, 3, 4):
        m = m[:, :, 0]  # drawing boards hand back image-like masks; any one channel holds the stroke
    if m.shape != tuple(size):
        raise InputError(f"{what} has shape {m.shape}, but the frame is {size[0]}×{size[1]} (H×W)")
    m = m != 0
    if not m.any():
        raise InputError(f"{what} is empty: it must cover at least one pixel")
    return m


def mask_bbox(mask: np.ndarray) -> np.ndarray:
    """SAM-Track's box of a mask: (x0, y0, x1, y1) with x1, y1 the last covered column and row."""
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def stroke_prompt(
    stroke: Sequence[Sequence[float]] | np.ndarray, size: tuple[int, int], n_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """Turn a brush stroke into a box prompt plus up to ``n_points`` positive points on the stroke.

    ``stroke`` is either the stroke's polyline as (x, y) points or a frame-size mask of the painted pixels.
    The box is SAM-Track's (the stroke's extent); a stroke that is a single row or column gets a one-pixel
    wide box so that it still has an area. Points are spread evenly along the stroke.
    """
    arr = np.asarray(stroke)
    if arr.ndim == 2 and arr.shape[1] == 2 and arr.shape != tuple(size):
        pts, _ = check_points(arr, np.ones(len(arr), dtype=np.int64), size)
        box = np.array([*pts.min(0), *pts.max(0)])
        on_stroke = pts
    else:
        mask = check_mask(arr, size, what="stroke mask")
        box = mask_bbox(mask)
        ys, xs = np.nonzero(mask)
        on_stroke = np.stack([xs, ys], 1).astype(np.float64)
    height, width = size
    if box[2] <= box[0]:
        box[2] = min(box[0] + 1, width)
        box[0] = box[2] - 1
    if box[3] <= box[1]:
        box[3] = min(box[1] + 1, height)
        box[1] = box[3] - 1
    count = min(n_points, len(on_stroke))
    picks = np.linspace(0, len(on_stroke) - 1, count).round().astype(int) if count else np.zeros(0, int)
    return box, on_stroke[picks]
