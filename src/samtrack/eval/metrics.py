"""DAVIS region (J) and boundary (F) measures for one binary mask pair, and their sequence statistics.

These follow the DAVIS-2017 evaluation code (davis2017-evaluation) and the `vos-benchmark` package
value for value: J is the intersection over union (1 when both masks are empty), F is the boundary
F-measure with a match tolerance of ``ceil(0.008 * image diagonal)`` pixels (8 px at 480p), and a
sequence is summarised by its mean, recall (fraction of frames above 0.5) and decay (mean of the
first quarter of frames minus the mean of the last quarter).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

BOUNDARY_THRESHOLD = 0.008
"""DAVIS boundary tolerance, as a fraction of the image diagonal."""


class Statistics(NamedTuple):
    """DAVIS summary of one object's per-frame values."""

    mean: float
    recall: float
    decay: float


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J: intersection over union of two boolean masks (1.0 when both are empty)."""
    intersection = np.count_nonzero(pred & gt)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return intersection / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a boolean mask, as DAVIS defines it.

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour; the
    image is extended by repeating its last row and column, so the image border is no boundary.
    """
    padded = np.pad(mask, ((0, 1), (0, 1)), mode="edge")
    right = padded[:-1, 1:]
    below = padded[1:, :-1]
    below_right = padded[1:, 1:]
    return (mask != right) | (mask != below) | (mask != below_right)


def tolerance_disk(shape: tuple[int, int], threshold: float = BOUNDARY_THRESHOLD) -> np.ndarray:
    """Structuring element for boundary matching: a disk of radius ``ceil(threshold * diagonal)``.

    A ``threshold`` of 1 or more is taken as the radius in pixels.
    """
    radius = threshold if threshold >= 1 else math.ceil(threshold * math.hypot(*shape))
    span = np.arange(-radius, radius + 1)
    return (span[None, :] ** 2 + span[:, None] ** 2 <= radius**2).astype(np.uint8)


def boundary_f(pred: np.ndarray, gt: np.ndarray, disk: np.ndarray | None = None) -> float:
    """Boundary accuracy F: F-measure of boundary pixels matched within the DAVIS tolerance.

    ``disk`` is the structuring element from `tolerance_disk` (computed from the mask size when
    omitted); pass it in when scoring many frames of one size.
    """
    if disk is None:
        disk = tolerance_disk(pred.shape)
    # Work on the masks' joint bounding box grown by the tolerance: outside it there is no boundary
    # and no dilated boundary, so the result is the same as on the whole image, only faster.
    rows = np.flatnonzero((pred | gt).any(axis=1))
    if rows.size == 0:
        return 1.0
    cols = np.flatnonzero((pred[rows[0] : rows[-1] + 1] | gt[rows[0] : rows[-1] + 1]).any(axis=0))
    margin = disk.shape[0] // 2 + 1
    window = (
        slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
        slice(max(cols[0] - margin, 0), cols[-1] + margin + 1),
    )
    pred_boundary = boundary_map(pred[window])
    gt_boundary = boundary_map(gt[window])
    n_pred = np.count_nonzero(pred_boundary)
    n_gt = np.count_nonzero(gt_boundary)
    if n_pred == 0 or n_gt == 0:
        # No boundary on one side: perfect when neither has one, else precision or recall is 0.
        return 1.0 if n_pred == n_gt else 0.0
    pred_near = cv2.dilate(pred_boundary.view(np.uint8), disk).view(bool)
    gt_near = cv2.dilate(gt_boundary.view(np.uint8), disk).view(bool)
    precision = np.count_nonzero(pred_boundary & gt_near) / n_pred
    recall = np.count_nonzero(gt_boundary & pred_near) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def statistics(values: np.ndarray) -> Statistics:
    """Mean, recall and decay of one object's per-frame J or F values (DAVIS definitions).

    Decay splits the frames into four overlapping quarters (boundaries shared, as DAVIS does) and
    returns the first quarter's mean minus the last quarter's.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("statistics need at least one per-frame value")
    edges = (np.round(np.linspace(1, values.size, 5) + 1e-10) - 1).astype(int)
    first = values[edges[0] : edges[1] + 1]
    last = values[edges[3] : edges[4] + 1]
    return Statistics(
        mean=float(np.mean(values)),
        recall=float(np.mean(values > 0.5)),
        decay=float(np.mean(first) - np.mean(last)),
    )
