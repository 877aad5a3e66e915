"""The key-frame segmenter: a SAM-family model behind clicks, boxes, strokes, mask prompts and segment-everything.

The image embedding of a frame is computed once and reused by every prompt on that frame; a new frame
replaces it. Clicks and boxes follow SAM-Track's two-pass scheme: predict three candidate masks, keep the
one with the best predicted IoU, predict again with its low-resolution logit as mask prompt, and keep
the best of that second pass.

Successive clicks on one object are tied together by a :class:`ClickState`: it keeps the clicks so far,
the object's box (if it started from one), the low-resolution logit and mask of the current result, and
the history needed to undo. Pass the same state to every call for that object; each click then refines
the current mask (its logit is the first pass's mask prompt) instead of starting over.
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
    check_mask,
    check_points,
    mask_bbox,
    stroke_prompt,
)

Frame = np.ndarray | Image.Image


@dataclass
class _Snapshot:
    points: list[tuple[float, float]]
    labels: list[int]
    box: np.ndarray | None
    logit: torch.Tensor | None
    mask: np.ndarray | None


@dataclass
class ClickState:
    """The interactive state of one object on one frame, for successive prompts and undo.

    Attributes:
        points, labels: every click so far (x, y in frame pixels; 1 positive, 0 negative).
        box: the box the object was started from (x0, y0, x1, y1), included in every later prediction.
        logit: low-resolution mask logit of the current result (the next click's mask prompt).
        mask: the current boolean H×W mask (None before the first prompt).
        frame_key: fingerprint of the frame the state belongs to.
    """

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: np.ndarray | None = None
    logit: torch.Tensor | None = None
    mask: np.ndarray | None = None
    frame_key: str | None = None
    _history: list[_Snapshot] = field(default_factory=list, repr=False)

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    def _push(self) -> None:
        self._history.append(_Snapshot(list(self.points), list(self.labels), self.box, self.logit, self.mask))

    def undo(self) -> np.ndarray | None:
        """Take back the last prompt; returns the mask as it was before it (None when back to the start)."""
        if not self._history:
            raise InputError("nothing to undo: this object has no prompts yet")
        snap = self._history.pop()
        self.points, self.labels, self.box, self.logit, self.mask = (
            snap.points, snap.labels, snap.box, snap.logit, snap.mask
        )
        if not self._history:
            self.frame_key = None
        return self.mask

    def reset(self) -> None:
        """Forget every prompt (start the object over, possibly on another frame)."""
        self.points, self.labels, self.box, self.logit, self.mask = [], [], None, None, None
        self.frame_key = None
        self._history.clear()


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
        mask_prompt: torch.Tensor | None,
    ) -> tuple[torch.Tensor, np.ndarray]:
        """SAM-Track's refinement: best of three, then best of three again with that logit as mask prompt."""
        pts = None if points is None else self.model.to_model_coords(torch.from_numpy(points)[None], embedding)
        labs = None if labels is None else torch.from_numpy(labels)[None]
        boxes = None
        if box is not None:
            boxes = self.model.to_model_coords(torch.from_numpy(box).reshape(1, 2, 2), embedding).reshape(1, 4)
        logit = mask_prompt
        for _ in range(2):
            logits, iou = self.model.decode(embedding, pts, labs, boxes, logit, multimask=True)
            best = int(torch.argmax(iou[0]))
            logit = logits[0, best][None, None]
        mask = self.model.upscale(logit[0, 0], embedding) > 0
        return logit, mask.cpu().numpy()

    def _predict(
        self,
        frame: Frame,
        state: ClickState | None,
        points: Sequence | None = None,
        labels: Sequence | None = None,
        box: Sequence | None = None,
        mask: np.ndarray | None = None,
    ) -> np.ndarray:
        rgb = as_rgb_frame(frame)
        size = rgb.shape[:2]
        new_points, new_labels = (None, None) if points is None else check_points(points, labels, size)
        new_box = None if box is None else check_box(box, size)
        key, embedding = self._embedded(rgb)
        if state is not None and state.frame_key not in (None, key):
            raise InputError("this ClickState belongs to another frame: call state.reset() or use a new ClickState")
        all_points, all_labels = new_points, new_labels
        mask_prompt = None if mask is None else self.model.mask_to_logits(mask, embedding)
        if state is not None:
            if state.points and new_points is not None:
                all_points = np.concatenate([np.asarray(state.points), new_points])
                all_labels = np.concatenate([np.asarray(state.labels, dtype=np.int64), new_labels])
            elif state.points:
                all_points = np.asarray(state.points, dtype=np.float64)
                all_labels = np.asarray(state.labels, dtype=np.int64)
            new_box = state.box if new_box is None else new_box
            mask_prompt = state.logit if mask_prompt is None else mask_prompt
        logit, result = self._two_pass(embedding, all_points, all_labels, new_box, mask_prompt)
        if state is not None:
            state._push()
            if new_points is not None:
                state.points += [tuple(p) for p in new_points.tolist()]
                state.labels += new_labels.tolist()
            state.box, state.logit, state.mask, state.frame_key = new_box, logit, result, key
        return result

    def click(
        self,
        frame: Frame,
        points: Sequence[Sequence[float]] | np.ndarray,
        labels: Sequence[int] | np.ndarray,
        state: ClickState | None = None,
    ) -> np.ndarray:
        """Mask from clicks: ``points`` (x, y) in frame pixels, ``labels`` 1 positive / 0 negative.

        Without ``state`` the clicks are one complete prompt (SAM-Track's behaviour: it re-sends every click
        so far). With ``state`` the new clicks are added to the object's earlier ones and its current logit
        seeds the prediction; the state is updated in place (``state.undo()`` takes the click back).
        """
        return self._predict(frame, state, points=points, labels=labels)

    def box(self, frame: Frame, box: Sequence[float] | np.ndarray, state: ClickState | None = None) -> np.ndarray:
        """Mask from a box (x0, y0, x1, y1) in frame pixels; with ``state``, later clicks keep the box."""
        return self._predict(frame, state, box=box)

    def stroke(
        self,
        frame: Frame,
        stroke: Sequence[Sequence[float]] | np.ndarray,
        n_points: int = 0,
        state: ClickState | None = None,
    ) -> np.ndarray:
        """Mask from a brush stroke: its polyline (x, y) points or a frame-size mask of the painted pixels.

        As in SAM-Track the stroke becomes its bounding box; ``n_points > 0`` adds that many positive
        clicks spread along the stroke to the box prompt.
        """
        rgb = as_rgb_frame(frame)
        box, on_stroke = stroke_prompt(stroke, rgb.shape[:2], n_points)
        if len(on_stroke):
            return self._predict(rgb, state, points=on_stroke, labels=np.ones(len(on_stroke), np.int64), box=box)
        return self._predict(rgb, state, box=box)

    def refine(self, frame: Frame, mask: np.ndarray, state: ClickState | None = None) -> np.ndarray:
        """Re-segment an existing mask (e.g. a tracked one): the mask is the prompt, with its box.

        The mask enters as the decoder's mask prompt (+/-10 logits) together with its bounding box, then
        the usual two passes run.
        """
        rgb = as_rgb_frame(frame)
        m = check_mask(mask, rgb.shape[:2])
        return self._predict(rgb, state, box=mask_bbox(m) + np.array([0, 0, 1, 1]), mask=m)

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
