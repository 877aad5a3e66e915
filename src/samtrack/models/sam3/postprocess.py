"""SAM 3's video post-processing on any device: the mask NMS, hole filling and sprinkle removal that
transformers runs only through a hub kernel.

transformers' ``Sam3VideoModel`` (5.x) calls two functions of the ``kernels-community/cv-utils`` hub
kernel; where it cannot load that kernel (no ``kernels`` package, no network, or, by default, a
repository the ``kernels`` package does not trust) it logs one line and skips both steps:

- ``generic_nms(ious, scores, iou_threshold, use_iou_matrix=True)``, from ``nms_masks`` in
  ``run_detection``: per text prompt, the detections scoring above ``score_threshold_detection`` (0.5)
  go through greedy NMS on their mask IoU with ``det_nms_thresh`` (0.1). Skipped, every detection of one
  object (SAM 3's DETR head proposes several) becomes a new object on the same frame.
- ``cc_2d(mask, get_counts=True)``, from ``fill_holes_in_mask_scores`` (the tracker's masks on every
  frame, new detections' masks): 8-connected components, each pixel labelled with its component's area.
  Background components of at most ``fill_hole_area`` (16) pixels of the low-resolution mask (288² at
  full size) become foreground (logit 0.1), then foreground islands of at most min(16, half the mask's
  area) pixels become background (logit -0.1).

:func:`use_portable_postprocessing` puts :data:`PORTABLE_CV_UTILS` where transformers looks for the
kernel, so that transformers' own code (its thresholds, its call sites) runs with these two functions.
The semantics are those of SAM 3's reference CPU fallbacks (facebookresearch/sam3 ``perflib``:
``generic_nms_cpu``, and ``skimage.measure.label``, whose 2-D default is 8-connectivity), written here
with NumPy and OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from samtrack.errors import ModelError


def greedy_nms(ious: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the candidates greedy NMS keeps, best score first, over a pairwise IoU matrix.

    Candidates are visited by decreasing score (ties: lower index first); one is dropped when its IoU
    with an already kept one exceeds ``iou_threshold`` (an IoU equal to it is kept).
    """
    if ious.dim() != 2 or ious.shape[0] != ious.shape[1] or scores.shape != ious.shape[:1]:
        raise ValueError(f"need an N×N IoU matrix and N scores, got {tuple(ious.shape)} and {tuple(scores.shape)}")
    overlaps = ious.detach().float().cpu().numpy() > iou_threshold
    order = torch.argsort(scores.detach().float().cpu(), descending=True, stable=True).tolist()
    suppressed = np.zeros(len(order), dtype=bool)
    kept = []
    for i in order:
        if not suppressed[i]:
            kept.append(i)
            suppressed |= overlaps[i]
    return torch.tensor(kept, dtype=torch.int64, device=scores.device)


def component_areas(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """8-connected components of each mask of an ``N×1×H×W`` batch (non-zero = inside).

    Returns ``(labels, areas)``, int32 tensors of the input's shape and device: each inside pixel's
    component label (1, 2, ... per mask) and its component's pixel count; 0 for both outside.
    """
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(f"need an N×1×H×W batch of masks, got {tuple(masks.shape)}")
    batch = (masks.detach() != 0).to("cpu", torch.uint8).numpy()
    labels = np.zeros(batch.shape, dtype=np.int32)
    areas = np.zeros(batch.shape, dtype=np.int32)
    for n, mask in enumerate(batch[:, 0]):
        _, labels[n, 0], stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
        sizes = stats[:, cv2.CC_STAT_AREA].astype(np.int32)
        sizes[0] = 0  # label 0 is the outside
        areas[n, 0] = sizes[labels[n, 0]]
    return torch.from_numpy(labels).to(masks.device), torch.from_numpy(areas).to(masks.device)


class PortableCvUtils:
    """The two functions of the ``kernels-community/cv-utils`` kernel that transformers' SAM 3 video
    model calls, with the kernel's signatures, on NumPy/OpenCV (any device: tensors come back where they
    came from)."""

    @staticmethod
    def generic_nms(ious: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                    use_iou_matrix: bool = True) -> torch.Tensor:
        if not use_iou_matrix:
            raise ValueError("only NMS over an IoU matrix is implemented (SAM 3 calls it so)")
        return greedy_nms(ious, scores, iou_threshold)

    @staticmethod
    def cc_2d(mask: torch.Tensor, get_counts: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        labels, areas = component_areas(mask)
        return (labels, areas) if get_counts else labels


PORTABLE_CV_UTILS = PortableCvUtils()


def use_portable_postprocessing() -> None:
    """Make transformers' SAM 3 video model run its NMS, hole filling and sprinkle removal with
    :data:`PORTABLE_CV_UTILS` instead of skipping them; a hub kernel already loaded in this process is
    left in place. Process-wide (transformers keeps the kernel in a module global) and idempotent; it
    never downloads anything."""
    from transformers.models.sam3_video import modeling_sam3_video

    if not hasattr(modeling_sam3_video, "cv_utils_kernel"):
        raise ModelError("this transformers version no longer loads SAM 3's post-processing kernel the way "
                         "samtrack expects (written against transformers 5.25): install transformers 5.25")
    # None: never tried (transformers would try the hub on first use); False: tried and failed.
    if not modeling_sam3_video.cv_utils_kernel:
        modeling_sam3_video.cv_utils_kernel = PORTABLE_CV_UTILS
