"""SAM 3's video post-processing without the hub kernel: mask NMS, hole filling and sprinkle removal run
through transformers' own code with samtrack's portable cv-utils, with SAM 3's semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.measure import label
from transformers.models.sam3_video import modeling_sam3_video as sam3_video

from samtrack.models.sam3.postprocess import (
    PORTABLE_CV_UTILS,
    component_areas,
    greedy_nms,
    use_portable_postprocessing,
)


@pytest.fixture
def kernel(monkeypatch, request):
    """transformers' cv-utils kernel slot set to `request.param`: False (the hub kernel failed to load:
    transformers skips the steps) or the portable one."""
    monkeypatch.setattr(sam3_video, "cv_utils_kernel", request.param)
    return request.param


def _box(side: int, y0: int, x0: int, y1: int, x1: int) -> torch.Tensor:
    logits = torch.full((side, side), -10.0)
    logits[y0:y1, x0:x1] = 10.0
    return logits


def test_greedy_nms_keeps_the_best_of_overlapping_candidates():
    ious = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.0]])
    # 1 is best; 0 overlaps it (0.5 > 0.1) and goes; 2 overlaps 1 by 0.3 and goes too
    assert greedy_nms(ious, torch.tensor([0.8, 0.9, 0.7]), 0.1).tolist() == [1]
    # a chain: 0 suppresses 1, and 2, which only 1 overlapped, survives
    assert greedy_nms(ious, torch.tensor([0.9, 0.8, 0.7]), 0.4).tolist() == [0, 2]
    # an IoU equal to the threshold is kept (SAM 3 drops only IoU > threshold)
    assert greedy_nms(ious, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 1, 2]


@pytest.mark.parametrize("kernel", [False, PORTABLE_CV_UTILS], indirect=True)
def test_two_detections_of_one_object_become_one(kernel):
    """transformers' nms_masks on two overlapping detections of one object (and a separate one): without
    the kernel both survive, with the portable one the weaker is dropped."""
    masks = torch.stack([_box(32, 4, 4, 20, 20), _box(32, 6, 6, 22, 22), _box(32, 24, 24, 30, 30)])
    keep = sam3_video.nms_masks(torch.tensor([0.8, 0.9, 0.6]), masks, prob_threshold=0.5, iou_threshold=0.1)
    assert keep.tolist() == ([True, True, True] if kernel is False else [False, True, True])


@pytest.mark.parametrize("side", [(31, 32), (40, 37)])
def test_component_areas_match_sam3s_reference_labelling(side):
    """SAM 3's reference CPU fallback labels with skimage.measure.label (8-connected in 2-D)."""
    rng = np.random.default_rng(0)
    masks = torch.from_numpy(rng.random((3, 1, *side)) < 0.45)
    labels, areas = component_areas(masks)
    for mask, got in zip(masks[:, 0].numpy(), areas[:, 0].numpy()):
        reference, count = label(mask, return_num=True)
        expected = np.zeros(mask.shape, dtype=np.int64)
        for i in range(1, count + 1):
            expected[reference == i] = (reference == i).sum()
        assert np.array_equal(got, expected)
    assert labels.shape == masks.shape and labels.dtype == torch.int32 and (labels[~masks] == 0).all()
    diagonal = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    diagonal[0, 0, [0, 1, 2], [0, 1, 2]] = True  # touching only at corners: one component
    assert component_areas(diagonal)[1][diagonal].tolist() == [3, 3, 3]


@pytest.mark.parametrize("kernel", [False, PORTABLE_CV_UTILS], indirect=True)
def test_holes_are_filled_and_sprinkles_removed_with_sam3s_thresholds(kernel):
    """fill_hole_area 16: a 4×4 hole is filled (logit 0.1), a 5×5 one is not; a 2×2 island is removed
    (logit -0.1), while a lone 3×3 object (area below 16 but not below half its mask's area) stays."""
    mask = _box(64, 2, 2, 40, 40)
    mask[10:14, 10:14] = -5.0  # 16 px hole
    mask[20:25, 20:25] = -5.0  # 25 px hole
    mask[50:52, 50:52] = 5.0  # 4 px island
    small = _box(64, 30, 50, 33, 53)  # 9 px: the whole object
    out = sam3_video.fill_holes_in_mask_scores(torch.stack([mask, small])[:, None], max_area=16)[:, 0]
    if kernel is False:
        assert torch.equal(out, torch.stack([mask, small]))  # transformers skips both steps
        return
    assert (out[0, 10:14, 10:14] == 0.1).all() and (out[0, 20:25, 20:25] == -5.0).all()
    assert (out[0, 50:52, 50:52] == -0.1).all()
    assert torch.equal(out[0, 2:10], mask[2:10]) and torch.equal(out[1], small)


def test_portable_postprocessing_is_installed_unless_a_kernel_is_loaded(monkeypatch):
    for absent in (None, False):  # never tried / failed to load
        monkeypatch.setattr(sam3_video, "cv_utils_kernel", absent)
        use_portable_postprocessing()
        assert sam3_video.cv_utils_kernel is PORTABLE_CV_UTILS
    hub_kernel = object()
    monkeypatch.setattr(sam3_video, "cv_utils_kernel", hub_kernel)
    use_portable_postprocessing()
    assert sam3_video.cv_utils_kernel is hub_kernel
