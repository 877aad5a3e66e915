"""Text prompts to boxes: Grounding DINO (transformers) with SAM-Track's detection semantics.

SAM-Track runs Grounding DINO on a frame with a caption such as ``"swan. water"`` and keeps the
queries whose best token probability exceeds ``box_threshold``; each kept box is named by the caption
tokens whose probability exceeds ``text_threshold``; boxes covering more than ``box_size_threshold``
of the frame are dropped before they become SAM box prompts. `Detector` reproduces that on
`GroundingDinoForObjectDetection` (the hub's grounding-dino-tiny holds the weights of SAM-Track's
groundingdino_swint_ogc), with the same image preprocessing (shortest side 800, longest 1333).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_convert

from samtrack.errors import InputError, ModelError
from samtrack.models.common import check_frame, resolve_device
from samtrack.models.registry import resolve_pretrained

if TYPE_CHECKING:
    from transformers import GroundingDinoProcessor

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Detection:
    """One detected object: a box in frame pixels, its confidence, the caption words naming it and,
    from detectors that segment (SAM 3), its mask; Grounding DINO gives boxes only (the segmenter then
    cuts them)."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    phrase: str
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)  # bool H×W at the frame's size


def normalize_caption(caption: str) -> str:
    """Lowercase, strip, and end every category with '.', e.g. ``"Swan.water"`` -> ``"swan. water."``.

    Grounding DINO was trained on captions whose categories are separated by ``.``; the result always
    ends with one, as SAM-Track's detector makes sure of.
    """
    parts = [part.strip().lower() for part in caption.split(".")]
    parts = [" ".join(part.split()) for part in parts if part]
    if not parts:
        raise InputError(f"the text prompt {caption!r} names nothing; give one or more object names, "
                         "separated by '.', e.g. 'swan. water'")
    return ". ".join(parts) + "."


def autocast_context(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for ``dtype`` ("float32" runs in full precision)."""
    if dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype == "float16" and device.type == "cpu":
        raise InputError("float16 is for GPUs; on the CPU use dtype 'bfloat16' or 'float32'")
    return torch.autocast(device_type=device.type, dtype=_DTYPES[dtype])


class Detector:
    """Grounding DINO open-vocabulary detector: a frame and a caption in, named boxes out."""

    options = ("box_threshold", "text_threshold", "box_size_threshold")  # the keyword settings `detect` reads

    def __init__(self, model: torch.nn.Module, processor: GroundingDinoProcessor, device: torch.device,
                 dtype: str = "float32") -> None:
        autocast_context(device, dtype)  # validates the pair before any frame is processed
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.dtype = dtype

    @classmethod
    def load(cls, name_or_path: str = "grounding-dino-tiny", device: str = "cpu",
             dtype: str = "float32") -> Detector:
        """Load a registry name (``grounding-dino-tiny``, ``grounding-dino-base``), hub id or local directory.

        ``dtype`` "bfloat16" (CPU or GPU) or "float16" (GPU) runs the model under autocast; weights stay fp32.
        """
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        dev = resolve_device(device)
        path = resolve_pretrained(name_or_path, "detector")
        try:
            processor = AutoProcessor.from_pretrained(path)
            model = GroundingDinoForObjectDetection.from_pretrained(path)
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(f"cannot load a Grounding DINO detector from {path}: {err}. Pass a directory "
                             "saved with save_pretrained (model and processor) or a registry name") from err
        return cls(model, processor, dev, dtype)

    @torch.inference_mode()
    def detect(self, frame: np.ndarray, caption: str, box_threshold: float = 0.25,
               text_threshold: float = 0.25, box_size_threshold: float = 1.0) -> list[Detection]:
        """Boxes of the objects ``caption`` names in ``frame`` (H×W×3 uint8 RGB), best score first.

        A query is kept when its highest token probability (sigmoid of the text logits) exceeds
        ``box_threshold``; its phrase joins the caption words whose probability exceeds
        ``text_threshold`` (it may be empty when none does). Boxes are clipped to the frame, and a box
        whose area exceeds ``box_size_threshold`` × the frame's area is dropped (1.0 keeps all).
        No detection gives an empty list.
        """
        check_frame(frame)
        for name, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be between 0 and 1, got {value}")
        if box_size_threshold <= 0:
            raise InputError(f"box_size_threshold must be > 0 (a fraction of the frame area), got {box_size_threshold}")
        text = normalize_caption(caption)
        inputs = self.processor(images=Image.fromarray(frame), text=text, return_tensors="pt")
        max_len = self.model.config.max_text_len
        if inputs["input_ids"].shape[1] > max_len:
            raise InputError(f"the text prompt is {inputs['input_ids'].shape[1]} tokens long; Grounding DINO "
                             f"reads at most {max_len}: name fewer or shorter categories")
        inputs = inputs.to(self.device)
        with autocast_context(self.device, self.dtype):
            outputs = self.model(**inputs)
        height, width = frame.shape[:2]
        return self._postprocess(outputs.logits[0], outputs.pred_boxes[0], inputs["input_ids"][0],
                                 (height, width), box_threshold, text_threshold, box_size_threshold)

    def _postprocess(self, logits: torch.Tensor, boxes: torch.Tensor, input_ids: torch.Tensor,
                     size: tuple[int, int], box_threshold: float, text_threshold: float,
                     box_size_threshold: float) -> list[Detection]:
        """Threshold queries and name them; ``logits`` num_queries×max_text_len, ``boxes`` cx,cy,w,h in [0, 1]."""
        height, width = size
        probs = logits[:, : input_ids.shape[0]].float().sigmoid()  # positions past the caption are padding
        scores = probs.max(dim=1).values
        keep = scores > box_threshold
        scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
        xyxy = box_convert(boxes[keep].float() * scale, in_fmt="cxcywh", out_fmt="xyxy")
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
        areas = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
        ids = input_ids.tolist()
        detections = []
        for box, area, score, token_probs in zip(xyxy.tolist(), areas.tolist(), scores[keep].tolist(),
                                                 probs[keep], strict=True):
            if area > box_size_threshold * height * width:
                continue
            words = [ids[i] for i in (token_probs > text_threshold).nonzero().flatten().tolist()]
            phrase = self.processor.tokenizer.decode(words, skip_special_tokens=True)
            detections.append(Detection(tuple(box), score, " ".join(phrase.replace(".", " ").split())))
        detections.sort(key=lambda d: d.score, reverse=True)
        return detections
