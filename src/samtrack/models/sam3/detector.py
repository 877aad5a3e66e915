"""Text prompts to instance masks with SAM 3 (``Sam3Model``, or a lite-text ``Sam3LiteTextModel``).

A caption such as ``"swan. duck"`` names one category per ``.``-separated part. SAM 3 takes one noun
phrase per prompt, so each category is its own prompt: the image is encoded once, and the DETR head
and mask head run for all categories in one batch over those shared image features. Each kept query
becomes one :class:`~samtrack.models.grounding.Detection` with SAM 3's own instance mask (no SAM box
step), named by its category; its score is SAM 3's (query probability × presence probability).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from samtrack.errors import InputError
from samtrack.models.common import check_frame
from samtrack.models.grounding import Detection, normalize_caption
from samtrack.models.sam3.loading import Sam3Weights, load_sam3

# Sam3Processor pads (and the text encoder reads) 32 tokens per prompt, start and end tokens included.
MAX_PROMPT_TOKENS = 32


def caption_categories(caption: str) -> list[str]:
    """The distinct categories of a caption, in order: ``"Swan. duck.swan"`` -> ``["swan", "duck"]``."""
    return list(dict.fromkeys(normalize_caption(caption).rstrip(".").split(". ")))


class Sam3Detector:
    """SAM 3 open-vocabulary detector: a frame and a caption in, named instance masks out."""

    options = ("score_threshold", "mask_threshold", "box_size_threshold")  # the keyword settings `detect` reads

    def __init__(self, weights: Sam3Weights) -> None:
        if weights.role != "detector":
            raise InputError(f"Sam3Detector needs SAM 3 loaded as a detector, not as a {weights.role}")
        self.weights = weights
        self.model = weights.model
        self.processor = weights.processor
        self.device = weights.device

    @classmethod
    def load(cls, name_or_path: str = "sam3", device: str = "auto", precision: str = "auto") -> Sam3Detector:
        """Load ``sam3`` (``facebook/sam3``), a lite-text detector (``sam3-litetext-s0|s1|l``), a hub id or a
        local directory; see :func:`samtrack.models.sam3.load_sam3` for device and precision."""
        return cls(load_sam3(name_or_path, "detector", device, precision))

    @property
    def precision(self) -> str:
        """What runs: ``fp32``, ``bf16`` or ``fp16``."""
        return self.weights.precision

    @torch.inference_mode()
    def detect(self, frame: np.ndarray, caption: str, score_threshold: float = 0.5, mask_threshold: float = 0.5,
               box_size_threshold: float = 1.0) -> list[Detection]:
        """Instances of every category of ``caption`` in ``frame`` (H×W×3 uint8 RGB), best score first.

        A query is kept when its score (query probability × SAM 3's presence probability for the
        category) exceeds ``score_threshold``; its mask is SAM 3's mask probability, upsampled to the
        frame, above ``mask_threshold``. A detection whose box covers more than ``box_size_threshold`` ×
        the frame's area is dropped (1.0 keeps all), as is one whose mask is empty. Each detection's
        ``phrase`` is its category, its ``mask`` a bool H×W array. Nothing found gives an empty list.
        """
        check_frame(frame)
        for name, value in (("score_threshold", score_threshold), ("mask_threshold", mask_threshold)):
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be between 0 and 1, got {value}")
        if box_size_threshold <= 0:
            raise InputError(f"box_size_threshold must be > 0 (a fraction of the frame area), got {box_size_threshold}")
        categories = caption_categories(caption)
        text = self.processor(text=categories, return_tensors="pt")
        too_long = [c for c, ids in zip(categories, text["input_ids"], strict=True) if len(ids) > MAX_PROMPT_TOKENS]
        if too_long:
            raise InputError(f"the category {too_long[0]!r} is longer than SAM 3 reads ({MAX_PROMPT_TOKENS - 2} "
                             "tokens): name it in fewer words")
        pixels = self.processor(images=frame, return_tensors="pt")["pixel_values"]
        vision = self.model.get_vision_features(pixel_values=pixels.to(self.device, self.model.dtype))
        # One image, one prompt per category: the image features are shared (expanded, not copied).
        count = len(categories)
        shared = replace(vision, fpn_hidden_states=tuple(f.expand(count, *f.shape[1:]) for f in vision.fpn_hidden_states),
                         fpn_position_encoding=tuple(p.expand(count, *p.shape[1:])
                                                     for p in vision.fpn_position_encoding))
        outputs = self.model(vision_embeds=shared, input_ids=text["input_ids"].to(self.device),
                             attention_mask=text["attention_mask"].to(self.device))
        return self._postprocess(outputs, categories, frame.shape[:2], score_threshold, mask_threshold,
                                 box_size_threshold)

    def _postprocess(self, outputs, categories: list[str], size: tuple[int, int], score_threshold: float,
                     mask_threshold: float, box_size_threshold: float) -> list[Detection]:
        """Threshold each category's queries (transformers' post-processing, in float32) into detections."""
        floats = replace(outputs, **{k: getattr(outputs, k).float()
                                     for k in ("pred_logits", "pred_boxes", "pred_masks", "presence_logits")})
        results = self.processor.post_process_instance_segmentation(
            floats, threshold=score_threshold, mask_threshold=mask_threshold, target_sizes=[size] * len(categories))
        height, width = size
        detections = []
        for category, result in zip(categories, results, strict=True):
            boxes = result["boxes"].clone()
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            masks = result["masks"].bool().cpu().numpy()
            for box, area, score, mask in zip(boxes.tolist(), areas.tolist(), result["scores"].tolist(), masks,
                                              strict=True):
                if area > box_size_threshold * height * width or not mask.any():
                    continue
                detections.append(Detection(tuple(box), score, category, mask))
        detections.sort(key=lambda d: d.score, reverse=True)
        return detections
