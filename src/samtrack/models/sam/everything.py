"""Segment everything: automatic mask generation over a point grid and image crops, then SAM-Track's merge.

The algorithm is the one of segment-anything's ``SamAutomaticMaskGenerator`` (same filters, same order
of operations, same NMS calls), so that the same weights give the same masks. transformers' own helpers
do not cover SAM-Track's settings: ``SamImageProcessor.generate_crop_boxes`` fails when
``crop_n_points_downscale_factor`` gives each crop layer a different point count, and ``filter_masks``
/ ``post_process_for_mask_generation`` skip the per-crop NMS, the preference for smaller crops and the
small-region clean-up. Mask upscaling still goes through the transformers image processor (backends).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

import cv2
import numpy as np
import torch
from torchvision.ops import batched_nms, box_area

from samtrack.models.sam.backends import Embedding, PromptModel


@dataclass(frozen=True)
class EverythingOptions:
    """Automatic mask generation settings; the defaults are SAM-Track's (its ``model_args.py``)."""

    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.9
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 1
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 2
    min_mask_region_area: int = 200


@dataclass
class MaskRecord:
    """One generated mask, with the fields of segment-anything's annotation records."""

    segmentation: np.ndarray  # bool H×W
    area: int
    bbox: tuple[float, float, float, float]  # x, y, w, h
    predicted_iou: float
    point_coords: tuple[float, float]
    stability_score: float
    crop_box: tuple[int, int, int, int]  # x, y, w, h


def crop_boxes(height: int, width: int, n_layers: int, overlap_ratio: float) -> list[tuple[list[int], int]]:
    """Crop boxes (x0, y0, x1, y1) with their layer index: the full image, then 2**i × 2**i overlapping crops."""
    boxes = [([0, 0, width, height], 0)]
    short_side = min(height, width)
    for layer in range(n_layers):
        per_side = 2 ** (layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        xs = [int((crop_w - overlap) * i) for i in range(per_side)]
        ys = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(xs, ys):
            boxes.append(([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)], layer + 1))
    return boxes


def point_grid(per_side: int) -> np.ndarray:
    """per_side² points at the centres of a regular grid over [0, 1]², x varying fastest."""
    offset = 1 / (2 * per_side)
    side = np.linspace(offset, 1 - offset, per_side)
    xs = np.tile(side[None, :], (per_side, 1))
    ys = np.tile(side[:, None], (1, per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def stability_score(logits: torch.Tensor, offset: float) -> torch.Tensor:
    """IoU between the masks thresholded at +offset and -offset (the first lies inside the second)."""
    inner = (logits > offset).sum((-1, -2), dtype=torch.int32)
    outer = (logits > -offset).sum((-1, -2), dtype=torch.int32)
    return inner / outer


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """XYXY boxes (inclusive max pixel) of boolean masks (N, H, W); an empty mask gives 0, 0, 0, 0."""
    if masks.shape[0] == 0:
        return torch.zeros(0, 4, device=masks.device)
    height, width = masks.shape[-2:]
    rows, cols = masks.any(-1), masks.any(-2)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    bottom = (rows * ys).amax(-1)
    right = (cols * xs).amax(-1)
    top = torch.where(rows, ys, height).amin(-1)
    left = torch.where(cols, xs, width).amin(-1)
    boxes = torch.stack([left, top, right, bottom], -1)
    empty = ~rows.any(-1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def _near_crop_edge(boxes: torch.Tensor, crop: list[int], frame: list[int], atol: float = 20.0) -> torch.Tensor:
    """Boxes (frame coordinates) touching a crop edge that is not also a frame edge."""
    crop_t = torch.tensor(crop, dtype=torch.float, device=boxes.device)
    frame_t = torch.tensor(frame, dtype=torch.float, device=boxes.device)
    near_crop = torch.isclose(boxes.float(), crop_t[None], atol=atol, rtol=0)
    near_frame = torch.isclose(boxes.float(), frame_t[None], atol=atol, rtol=0)
    return (near_crop & ~near_frame).any(1)


def _remove_small_regions(mask: np.ndarray, min_area: int, holes: bool) -> tuple[np.ndarray, bool]:
    """Fill holes (holes=True) or drop islands smaller than min_area; returns the mask and whether it changed."""
    working = (mask ^ holes).astype(np.uint8)
    n_labels, regions, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = [i + 1 for i, s in enumerate(sizes) if s < min_area]
    if not small:
        return mask, False
    if holes:
        keep = [0, *small]
    else:
        keep = [i for i in range(1, n_labels) if i not in small] or [int(np.argmax(sizes)) + 1]
    return np.isin(regions, keep), True


class _Candidates:
    """Column store of candidate masks (all tensors indexed together)."""

    def __init__(self) -> None:
        self.cols: dict[str, list[torch.Tensor]] = {}

    def add(self, **cols: torch.Tensor) -> None:
        for name, value in cols.items():
            self.cols.setdefault(name, []).append(value)

    def merged(self) -> dict[str, torch.Tensor]:
        return {name: torch.cat(values) for name, values in self.cols.items()}


def _select(data: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: value[keep.to(value.device)] for name, value in data.items()}


def _process_crop(
    model: PromptModel,
    embedding: Embedding,
    crop: list[int],
    grid: np.ndarray,
    frame_size: tuple[int, int],
    opts: EverythingOptions,
) -> dict[str, torch.Tensor]:
    """Predict, filter and de-duplicate the masks of one crop; boxes, masks and points in frame coordinates."""
    x0, y0, x1, y1 = crop
    height, width = frame_size
    crop_h, crop_w = y1 - y0, x1 - x0
    points = torch.from_numpy(grid * np.array([crop_w, crop_h]))
    found = _Candidates()
    decode = model.grid_decoder(embedding)
    min_iou = opts.pred_iou_thresh if opts.pred_iou_thresh > 0 else None
    for start in range(0, len(points), opts.points_per_batch):
        batch = points[start : start + opts.points_per_batch]
        # Only the survivors of the IoU filter are decoded to masks and upscaled: IoU comes first.
        logits, iou, keep = decode(model.to_model_coords(batch, embedding), min_iou)
        batch_points = batch.repeat_interleave(keep.shape[1], 0)[keep.flatten().cpu()]
        full = model.upscale(logits, embedding)
        stability = stability_score(full, opts.stability_score_offset)
        keep = stability >= opts.stability_score_thresh
        masks = full[keep] > 0
        boxes = masks_to_boxes(masks) + torch.tensor([x0, y0, x0, y0], device=masks.device)
        edge = _near_crop_edge(boxes, crop, [0, 0, width, height])
        masks, boxes = masks[~edge], boxes[~edge]
        padded = torch.zeros(len(masks), height, width, dtype=torch.bool)
        padded[:, y0:y1, x0:x1] = masks.cpu()
        found.add(
            masks=padded,
            boxes=boxes.cpu(),
            iou=iou[keep][~edge].cpu(),
            stability=stability[keep][~edge].cpu(),
            points=batch_points[keep.cpu()][~edge.cpu()] + torch.tensor([x0, y0]),
        )
    data = found.merged()
    keep = batched_nms(data["boxes"].float(), data["iou"], torch.zeros(len(data["boxes"])), opts.box_nms_thresh)
    data = _select(data, keep)
    data["crop_boxes"] = torch.tensor([crop] * len(keep), dtype=torch.float).reshape(-1, 4)
    return data


def _clean_small_regions(data: dict[str, torch.Tensor], min_area: int, nms_thresh: float) -> dict[str, torch.Tensor]:
    """Fill small holes, drop small islands, then NMS again preferring masks that needed no change."""
    if len(data["masks"]) == 0:
        return data
    cleaned, scores = [], []
    for mask in data["masks"].numpy():
        mask, filled = _remove_small_regions(mask, min_area, holes=True)
        mask, dropped = _remove_small_regions(mask, min_area, holes=False)
        cleaned.append(torch.from_numpy(mask))
        scores.append(0.0 if filled or dropped else 1.0)
    masks = torch.stack(cleaned)
    boxes = masks_to_boxes(masks)
    keep = batched_nms(boxes.float(), torch.tensor(scores), torch.zeros(len(boxes)), nms_thresh)
    return _select(dict(data, masks=masks, boxes=boxes), keep)


def generate_masks(
    model: PromptModel,
    frame: np.ndarray,
    embed: Callable[[list[int]], Embedding],
    opts: EverythingOptions,
) -> list[MaskRecord]:
    """All masks of a frame, in the order segment-anything's generator returns them.

    ``embed(crop_box)`` returns the embedding of ``frame`` cropped to that box (cached by the caller).
    """
    height, width = frame.shape[:2]
    grids = [
        point_grid(int(opts.points_per_side / opts.crop_n_points_downscale_factor**i))
        for i in range(opts.crop_n_layers + 1)
    ]
    crops = crop_boxes(height, width, opts.crop_n_layers, opts.crop_overlap_ratio)
    found = _Candidates()
    for crop, layer in crops:
        found.add(**_process_crop(model, embed(crop), crop, grids[layer], (height, width), opts))
    data = found.merged()
    if len(crops) > 1:
        # Duplicates across crops: keep the one from the smaller crop.
        scores = 1 / box_area(data["crop_boxes"])
        keep = batched_nms(data["boxes"].float(), scores, torch.zeros(len(scores)), opts.crop_nms_thresh)
        data = _select(data, keep)
    if opts.min_mask_region_area > 0:
        data = _clean_small_regions(
            data, opts.min_mask_region_area, max(opts.box_nms_thresh, opts.crop_nms_thresh)
        )
    records = []
    for i in range(len(data["masks"])):
        bx0, by0, bx1, by1 = data["boxes"][i].tolist()
        cx0, cy0, cx1, cy1 = (int(v) for v in data["crop_boxes"][i].tolist())
        mask = data["masks"][i].numpy()
        records.append(
            MaskRecord(
                segmentation=mask,
                area=int(mask.sum()),
                bbox=(bx0, by0, bx1 - bx0, by1 - by0),
                predicted_iou=float(data["iou"][i]),
                point_coords=tuple(data["points"][i].tolist()),
                stability_score=float(data["stability"][i]),
                crop_box=(cx0, cy0, cx1 - cx0, cy1 - cy0),
            )
        )
    return records


def merge_masks(records: list[MaskRecord], shape: tuple[int, int], min_area: int, max_obj_num: int) -> np.ndarray:
    """SAM-Track's merge into one id mask.

    Masks larger than ``min_area`` are painted in order (later ones over earlier ones); ids whose visible
    area is then under ``min_area`` are dropped and the rest renumbered 1..n in order, at most
    ``max_obj_num`` of them.
    """
    painted = np.zeros(shape, dtype=np.int32)  # int32: more than 255 masks must not wrap around
    next_id = 1
    for record in records:
        if record.area > min_area:
            painted[record.segmentation] = next_id
            next_id += 1
    areas = np.bincount(painted.ravel(), minlength=next_id)
    lut = np.zeros(next_id, dtype=np.uint8)
    new_id = 1
    for old_id in range(1, next_id):
        if areas[old_id] == 0:
            continue
        if areas[old_id] >= min_area and new_id <= max_obj_num:
            lut[old_id] = new_id
            new_id += 1
    return lut[painted]
