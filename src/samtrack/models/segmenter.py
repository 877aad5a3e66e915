"""The key-frame segmenter: a SAM-family model behind clicks, boxes, strokes, mask prompts and segment-everything.

The image embedding of a frame is computed once and reused by every prompt on that frame; a new frame
replaces it. Clicks and boxes follow SAM-Track's two-pass scheme: predict three candidate masks, keep the
one with the best predicted IoU, predict again with its low-resolution logit as mask prompt, and keep
the best of that second pass.

As in SAM-Track, successive clicks on one object are one prompt: the caller sends every click so far
(the session and the app keep them), and the prediction starts afresh from all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from samtrack.errors import InputError
from samtrack.models.common import TORCH_DTYPES
from samtrack.models.sam.backends import Embedding, PromptModel
from samtrack.models.sam.everything import (
    EverythingOptions,
    MaskRecord,
    crop_boxes,
    generate_masks,
    merge_masks,
)
from samtrack.models.sam.loading import load_prompt_model
from samtrack.models.sam.prompts import (
    as_rgb_frame,
    check_box,
    check_points,
    stroke_prompt,
)

Frame = np.ndarray | Image.Image


@dataclass
class _FrameCache:
    key: str
    frame: Embedding
    crops: dict[tuple[int, int, int, int], Embedding] = field(default_factory=dict)


def frame_key(frame: np.ndarray) -> str:
    """Content fingerprint of a frame (equal pixels give equal keys, whatever the array object)."""
    digest = hashlib.blake2b(frame.tobytes(), digest_size=16)
    digest.update(str(frame.shape).encode())
    return digest.hexdigest()


class Segmenter:
    """Promptable image segmentation with a SAM-family model (SAM, SAM-HQ, SAM 2.1, EdgeTAM).

    Use :meth:`load`; all prompt methods take an RGB ``uint8`` H×W×3 frame (RGBA arrays lose their alpha
    channel, PIL images are converted) and return a boolean H×W mask at the frame's resolution.
    """

    def __init__(self, model: PromptModel, crop_batch_size: int = 1):
        self.model = model
        self.crop_batch_size = crop_batch_size
        self._cache: _FrameCache | None = None

    @classmethod
    def load(
        cls,
        name_or_path: str = "sam-vit-b",
        device: str = "auto",
        precision: str = "auto",
        crop_batch_size: int = 1,
    ) -> Segmenter:
        """Load a segmenter.

        Args:
            name_or_path: a registry name (``sam-vit-b``, ``sam-hq-vit-l``, ``sam2.1-tiny``, ``edgetam``, ...),
                a hub id, a directory saved with ``save_pretrained``, or an original segment-anything
                checkpoint file (``sam_vit_b_01ec64.pth``), converted on load.
            device: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda`` or ``mps``.
            precision: ``fp32``, ``bf16`` or ``fp16`` weights and activations; ``auto``: fp16 on CUDA,
                bf16 on CPUs where it is faster (``models.common.native_bf16``), fp32 otherwise.
            crop_batch_size: how many segment-everything crops go through the encoder at once.
        """
        return cls(load_prompt_model(name_or_path, device, precision), crop_batch_size=crop_batch_size)

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def precision(self) -> str:
        """What runs: ``fp32``, ``bf16`` or ``fp16``."""
        return next(k for k, v in TORCH_DTYPES.items() if v == self.model.dtype)

    # --- embeddings -------------------------------------------------------------------------------

    def _embedded(self, frame: np.ndarray) -> tuple[str, Embedding]:
        key = frame_key(frame)
        if self._cache is None or self._cache.key != key:
            self._cache = _FrameCache(key, self.model.embed([frame]))
        return key, self._cache.frame

    def prepare(self, frame: Frame) -> None:
        """Compute and cache the frame's embedding now (prompts on this frame then skip the encoder)."""
        self._embedded(as_rgb_frame(frame))

    def _crop_embedder(self, frame: np.ndarray, crops: list[list[int]]) -> Callable[[list[int]], Embedding]:
        """An ``embed(crop_box)`` for segment-everything that batches and caches the crops' encoder passes."""
        _, full = self._embedded(frame)
        cache = self._cache
        height, width = frame.shape[:2]
        missing = [c for c in crops if tuple(c) not in cache.crops and c != [0, 0, width, height]]
        for start in range(0, len(missing), self.crop_batch_size):
            batch = missing[start : start + self.crop_batch_size]
            embedding = self.model.embed([frame[y0:y1, x0:x1] for x0, y0, x1, y1 in batch])
            for i, crop in enumerate(batch):
                cache.crops[tuple(crop)] = embedding.select(i)

        def embed(crop: list[int]) -> Embedding:
            return full if crop == [0, 0, width, height] else cache.crops[tuple(crop)]

        return embed

    # --- prompts ----------------------------------------------------------------------------------

    def _two_pass(
        self,
        embedding: Embedding,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
    ) -> np.ndarray:
        """SAM-Track's refinement: best of three, then best of three again with that logit as mask prompt."""
        pts = None if points is None else self.model.to_model_coords(torch.from_numpy(points)[None], embedding)
        labs = None if labels is None else torch.from_numpy(labels)[None]
        boxes = None
        if box is not None:
            boxes = self.model.to_model_coords(torch.from_numpy(box).reshape(1, 2, 2), embedding).reshape(1, 4)
        logit = None
        for _ in range(2):
            logits, iou = self.model.decode(embedding, pts, labs, boxes, logit, multimask=True)
            best = int(torch.argmax(iou[0]))
            logit = logits[0, best][None, None]
        return (self.model.upscale(logit[0, 0], embedding) > 0).cpu().numpy()

    def _predict(self, frame: Frame, points: Sequence | None = None, labels: Sequence | None = None,
                 box: Sequence | None = None) -> np.ndarray:
        rgb = as_rgb_frame(frame)
        size = rgb.shape[:2]
        new_points, new_labels = (None, None) if points is None else check_points(points, labels, size)
        new_box = None if box is None else check_box(box, size)
        _, embedding = self._embedded(rgb)
        return self._two_pass(embedding, new_points, new_labels, new_box)

    def click(self, frame: Frame, points: Sequence[Sequence[float]] | np.ndarray,
              labels: Sequence[int] | np.ndarray) -> np.ndarray:
        """Mask from clicks: ``points`` (x, y) in frame pixels, ``labels`` 1 positive / 0 negative; every
        click on the object so far is one prompt (SAM-Track re-sends them all)."""
        return self._predict(frame, points=points, labels=labels)

    def box(self, frame: Frame, box: Sequence[float] | np.ndarray) -> np.ndarray:
        """Mask from a box (x0, y0, x1, y1) in frame pixels."""
        return self._predict(frame, box=box)

    def stroke(
        self,
        frame: Frame,
        stroke: Sequence[Sequence[float]] | np.ndarray,
        n_points: int = 0,
    ) -> np.ndarray:
        """Mask from a brush stroke: its polyline (x, y) points or a frame-size mask of the painted pixels.

        As in SAM-Track the stroke becomes its bounding box; ``n_points > 0`` adds that many positive
        clicks spread along the stroke to the box prompt.
        """
        rgb = as_rgb_frame(frame)
        box, on_stroke = stroke_prompt(stroke, rgb.shape[:2], n_points)
        if len(on_stroke):
            return self._predict(rgb, points=on_stroke, labels=np.ones(len(on_stroke), np.int64), box=box)
        return self._predict(rgb, box=box)

    # --- segment everything -----------------------------------------------------------------------

    def generate(self, frame: Frame, **options: float) -> list[MaskRecord]:
        """Every mask segment-anything's automatic generator would return, in its order.

        Keyword options are those of :class:`EverythingOptions` (defaults: SAM-Track's settings).
        """
        rgb = as_rgb_frame(frame)
        try:
            opts = EverythingOptions(**options)
        except TypeError as err:
            raise InputError(f"unknown segment-everything option: {err}") from err
        crops = [c for c, _ in crop_boxes(*rgb.shape[:2], opts.crop_n_layers, opts.crop_overlap_ratio)]
        return generate_masks(self.model, rgb, self._crop_embedder(rgb, crops), opts)

    def everything(self, frame: Frame, min_area: int = 200, max_obj_num: int = 255, **options: float) -> np.ndarray:
        """Segment everything and merge it SAM-Track's way into one ``uint8`` H×W id mask (0 = background).

        Masks are painted in generation order; objects smaller than ``min_area`` pixels are dropped and the
        rest numbered 1..n (at most ``max_obj_num``, ≤ 255).
        """
        if not 1 <= max_obj_num <= 255:
            raise InputError(f"max_obj_num must be in 1..255 (uint8 id masks), got {max_obj_num}")
        rgb = as_rgb_frame(frame)
        records = self.generate(rgb, **options)
        return merge_masks(records, rgb.shape[:2], min_area, max_obj_num)
