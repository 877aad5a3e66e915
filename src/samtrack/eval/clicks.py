"""Simulated clicks on a ground-truth mask: the interactive protocol of click-based segmentation benchmarks.

Each new click goes to the point deepest inside the largest remaining error: the maximum of the
distance transform over missed object pixels (a positive click) and over wrongly included pixels
(a negative click), whichever reaches farther from its region's border (the image border counts
as a border). The segmenter then gets every click so far, as SAM-Track sends them.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import cv2
import numpy as np


class Click(NamedTuple):
    """One simulated click: pixel position and label (1 positive, 0 negative)."""

    x: int
    y: int
    label: int


class ClickSegmenter(Protocol):
    """What the simulation needs from a segmenter (`samtrack.Segmenter` provides it)."""

    def click(self, frame: np.ndarray, points: list[tuple[int, int]], labels: list[int]) -> np.ndarray: ...


def _depth(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each region pixel to the nearest pixel outside it or off the image."""
    padded = np.pad(region, 1).astype(np.uint8)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def next_click(pred: np.ndarray, gt: np.ndarray) -> Click | None:
    """The click that fixes the largest error of ``pred`` against ``gt`` (None when they agree).

    On a tie between a missed and a wrongly included region the click is positive.
    """
    missed = _depth(gt & ~pred)
    extra = _depth(pred & ~gt)
    positive = missed.max() >= extra.max()
    depth = missed if positive else extra
    if depth.max() == 0:
        return None
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return Click(int(x), int(y), int(positive))


def segment_with_clicks(
    segmenter: ClickSegmenter, frame: np.ndarray, gt: np.ndarray, n_clicks: int
) -> tuple[np.ndarray, list[Click]]:
    """Up to ``n_clicks`` simulated clicks for the object ``gt`` (bool H×W); its mask and the clicks used.

    Stops early once the mask equals the ground truth.
    """
    mask = np.zeros_like(gt, dtype=bool)
    clicks: list[Click] = []
    for _ in range(n_clicks):
        click = next_click(mask, gt)
        if click is None:
            break
        clicks.append(click)
        mask = np.asarray(
            segmenter.click(frame, points=[(c.x, c.y) for c in clicks], labels=[c.label for c in clicks]),
            dtype=bool,
        )
    return mask, clicks


def clicks_id_mask(segmenter: ClickSegmenter, frame: np.ndarray, gt_ids: np.ndarray, n_clicks: int) -> np.ndarray:
    """An id mask of every object in ``gt_ids``, each segmented from ``n_clicks`` simulated clicks.

    Objects are placed in id order; a pixel already taken by a lower id keeps it.
    """
    ids = np.zeros_like(gt_ids, dtype=np.uint8)
    for obj in np.unique(gt_ids):
        if obj == 0:
            continue
        mask, _ = segment_with_clicks(segmenter, frame, gt_ids == obj, n_clicks)
        ids[mask & (ids == 0)] = obj
    return ids
