"""Masks as polygons, for the formats that store outlines (COCO with `--polygons`, YOLO, CVAT).

Outlines are traced with OpenCV on the mask upsampled twice (nearest), so every ring runs a quarter
pixel inside the edges of the object's pixels: a single pixel or a one-pixel line still gives a real
polygon, and a point-in-polygon rasteriser (pycocotools, CVAT) gives back exactly the mask's pixels.

A mask may have several parts and holes. `part_polygons` gives one polygon per part, each part's
holes joined into it; `joined_polygon` gives one polygon for the whole mask. Joining inserts a ring
into the polygon at their closest vertices through a zero-width bridge (out along it, round the ring,
back along it), as Ultralytics' `merge_multi_segment` joins the parts of a COCO object. The bridges
add no area, and holes keep the opposite orientation to their outer ring, so even-odd and non-zero
fills (pycocotools, OpenCV's `fillPoly`, SVG in CVAT) all draw the holes as holes.
"""

from __future__ import annotations

import cv2
import numpy as np

Ring = np.ndarray  # N×2 float64 (x, y) vertices in frame pixels, not repeating the first at the end
# Vertices compared at once when looking for the closest pair of two rings (bounds the memory used).
_CHUNK = 4096


def _rings(mask: np.ndarray) -> list[tuple[Ring, list[Ring]]]:
    """(outer ring, its holes) of every part of a boolean mask."""
    up = cv2.resize(np.asarray(mask, dtype=np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    # A contour through the centres of the upsampled boundary pixels lies a quarter pixel inside the edge.
    rings = [(c.reshape(-1, 2).astype(np.float64) + 0.5) / 2 for c in contours]
    links = hierarchy[0]  # per contour: next, previous, first child, parent
    parts = []
    for index, (_, _, child, parent) in enumerate(links):
        if parent >= 0:
            continue
        holes = []
        while child >= 0:
            holes.append(rings[child])
            child = links[child][0]
        parts.append((rings[index], holes))
    return parts


def _closest(a: Ring, b: Ring) -> tuple[int, int]:
    """Indices (i, j) of the closest pair of vertices a[i], b[j]."""
    best, best_i, best_j = np.inf, 0, 0
    b32 = b.astype(np.float32)
    for start in range(0, len(a), _CHUNK):
        block = a[start:start + _CHUNK].astype(np.float32)
        d = ((block[:, None, :] - b32[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        if d[i, j] < best:
            best, best_i, best_j = float(d[i, j]), start + int(i), int(j)
    return best_i, best_j


def _join(rings: list[Ring]) -> Ring:
    """One polygon through every ring (the largest first), each bridged in at its closest vertex."""
    rings = sorted(rings, key=len, reverse=True)
    polygon = rings[0]
    for ring in rings[1:]:
        i, j = _closest(polygon, ring)
        polygon = np.concatenate([polygon[:i + 1], np.roll(ring, -j, axis=0), ring[j:j + 1], polygon[i:]])
    return polygon


def part_polygons(mask: np.ndarray) -> list[Ring]:
    """One polygon per part of the mask (several parts: several polygons), holes joined in; [] when empty."""
    return [_join([outer, *holes]) for outer, holes in _rings(mask)]


def joined_polygon(mask: np.ndarray) -> Ring | None:
    """The whole mask as one polygon: parts and holes joined by zero-width bridges; None when empty."""
    rings = [ring for outer, holes in _rings(mask) for ring in (outer, *holes)]
    return _join(rings) if rings else None
