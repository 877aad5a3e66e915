"""Overlay rendering: id masks drawn over frames in their DAVIS palette colours.

`render_overlay(frame, ids)` blends every object's palette colour into the frame in one
vectorised pass (a palette lookup and one integer blend over the whole image), draws object
contours found by comparing each pixel with its four neighbours, and optionally writes each
object's id and label at its centroid with Pillow. Cost does not grow with the number of objects
except for the text.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from samtrack.errors import InputError
from samtrack.io.masks import DAVIS_PALETTE, as_id_mask

CONTOUR_COLOR = (0, 0, 0)  # SAM-Track draws black object outlines


def boundary_mask(ids: np.ndarray) -> np.ndarray:
    """Pixels whose id differs from a 4-neighbour's: both sides of every object outline.

    The outline is two pixels wide (one on each side of where the id changes), which stays visible
    after video compression and on top of the blended colour.
    """
    edge = np.zeros(ids.shape, dtype=bool)
    horiz = ids[:, 1:] != ids[:, :-1]
    vert = ids[1:, :] != ids[:-1, :]
    edge[:, 1:] |= horiz
    edge[:, :-1] |= horiz
    edge[1:, :] |= vert
    edge[:-1, :] |= vert
    return edge


@lru_cache(maxsize=8)
def _blend_tables(weight: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-id lookup tables for a fixed-point blend with weights out of 256.

    out = (frame * keep[id] + add[id]) >> 8, where keep = 256 - w and add = colour * w, with
    w = `weight` for objects and 0 for background. All terms fit in uint16.
    """
    keep = np.full(256, 256 - weight, dtype=np.uint16)
    keep[0] = 256
    add = DAVIS_PALETTE.astype(np.uint16) * weight
    add[0] = 0
    return keep, add


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _centroids(ids: np.ndarray) -> dict[int, tuple[float, float]]:
    """Centroid (x, y) of every object id present, computed for all ids at once."""
    ys, xs = np.nonzero(ids)
    vals = ids[ys, xs]
    counts = np.bincount(vals, minlength=256)
    sx = np.bincount(vals, weights=xs, minlength=256)
    sy = np.bincount(vals, weights=ys, minlength=256)
    present = np.nonzero(counts)[0]
    return {int(i): (sx[i] / counts[i], sy[i] / counts[i]) for i in present}


def _draw_text(image: np.ndarray, ids: np.ndarray, labels: dict[int, str] | None, show_ids: bool) -> np.ndarray:
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    font = _font(max(12, round(min(ids.shape) / 30)))
    for obj_id, (x, y) in _centroids(ids).items():
        label = (labels or {}).get(obj_id, "")
        text = f"{obj_id} {label}".strip() if show_ids else label
        if not text:
            continue
        color = tuple(int(c) for c in DAVIS_PALETTE[obj_id])
        draw.text((x, y), text, fill=(255, 255, 255), font=font, anchor="mm",
                  stroke_width=2, stroke_fill=color)
    return np.asarray(pil)


def render_overlay(frame: np.ndarray, ids: np.ndarray, labels: dict[int, str] | None = None,
                   alpha: float = 0.5, contours: bool = True, show_ids: bool = False,
                   contour_color: tuple[int, int, int] = CONTOUR_COLOR) -> np.ndarray:
    """Draw an id mask over a frame.

    Args:
        frame: H×W×3 uint8 RGB.
        ids: H×W uint8 id mask (0 = background).
        labels: optional id → label text, drawn at each object's centroid.
        alpha: weight of the object colour in the blend (0 = invisible, 1 = solid).
        contours: outline every object.
        show_ids: also write each object's id number (before its label).
        contour_color: RGB outline colour.

    Returns:
        A new H×W×3 uint8 RGB image.
    """
    frame = np.asarray(frame)
    ids = as_id_mask(ids)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f"frame must be H×W×3 uint8 RGB, got {frame.dtype} {frame.shape}")
    if frame.shape[:2] != ids.shape:
        raise InputError(f"mask size {ids.shape[1]}x{ids.shape[0]} does not match frame size "
                         f"{frame.shape[1]}x{frame.shape[0]}")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be between 0 and 1, got {alpha}")

    keep_lut, add_lut = _blend_tables(round(alpha * 256))
    out = frame.astype(np.uint16)
    out *= np.take(keep_lut, ids)[..., None]
    out += np.take(add_lut, ids, axis=0)
    out >>= 8
    out = out.astype(np.uint8)
    if contours:
        out[boundary_mask(ids)] = contour_color
    if show_ids or labels:
        out = _draw_text(out, ids, labels, show_ids)
    return out
