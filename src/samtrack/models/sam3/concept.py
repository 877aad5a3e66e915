"""SAM 3 concept tracking, streamed: every instance of some text categories, detected and tracked on
every frame by SAM 3 itself (transformers' ``Sam3VideoModel``), one frame in at a time, in bounded memory.

How one frame goes (transformers' code, driven as its whole-video mode drives it):
the detector finds each category's instances, the tracker carries the known objects on, detections
that match no object become new objects, and SAM 3's *hotstart* heuristics remove, within the
``hotstart_delay`` (15) frames after an object first appears, an object that no detection matched on
``hotstart_unmatch_thresh`` (8) frames or that duplicated an older object on ``hotstart_dup_thresh``
(8) frames. Such a removal is retroactive: the object vanishes from every frame since it appeared. So a
frame is *final* only ``hotstart_delay - 1`` frames later: :meth:`ConceptTracker.push` returns each
frame once nothing can change it any more (the first one after ``hotstart_delay`` frames), and
:meth:`ConceptTracker.finish` returns the rest. transformers' own streaming call
(``model(session, frame=...)``) turns these removals off; frames go in here with
``session.add_new_frame`` and ``model(session, frame_idx=i)``, which keeps them on.

What is pruned after every frame (transformers keeps all of it for the whole video):
- the preprocessed frames (12 MB each at 1008²) and the finished frame's vision features: only the
  frame being processed needs them;
- per object and frame, the tracker's outputs (~6.6 MB per object and frame at full size): the next
  frames read the memory features of the last ``num_maskmem - 1`` (6) frames and the object pointers of
  the last ``max_object_pointers_in_encoder - 1`` (15); everything older, the high-resolution and
  low-resolution masks of every past frame, and the mask prompts of past frames are dropped;
- conditioning frames (an object's first frame and its re-conditioning every 16th frame) beyond the
  ``max_cond_frame_num`` (4) most recent, which are the ones the tracker attends to; transformers also
  takes the object pointers of all older ones, original SAM 3 only of the attended ones, as here;
- per-frame bookkeeping (tracker scores, suppressed ids) of past frames, the hotstart counters of
  objects past their hotstart window, and every trace of removed objects.
What remains grows with the number of objects alive, never with the video's length: SAM 3 keeps an
object it has found until the end of the video (up to ``max_objects``).

The post-processing transformers skips without its hub kernel (NMS of duplicate detections, hole
filling, sprinkle removal) runs through :mod:`samtrack.models.sam3.postprocess`.
"""

from __future__ import annotations

import copy
import functools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from samtrack.errors import InputError, ModelError
from samtrack.models.common import check_frame
from samtrack.models.grounding import normalize_caption
from samtrack.models.sam3.loading import Sam3Weights
from samtrack.models.sam3.postprocess import use_portable_postprocessing

TEXT_TOKENS = 32  # the processor pads every category to 32 CLIP tokens and the text encoder reads no more
_OUTPUT_KEYS_FOR_MEMORY = ("maskmem_features", "maskmem_pos_enc", "object_pointer", "object_score_logits")
_OUTPUT_KEYS_FOR_POINTERS = ("object_pointer", "object_score_logits")


@dataclass(frozen=True)
class ConceptObject:
    """One object on one final frame."""

    track_id: int  # 1, 2, ... in the order objects first appear; the same for an object on every frame
    label: str  # the category it was found for
    score: float  # SAM 3's detection probability when it was found
    mask: np.ndarray  # bool H×W at the frame's size


@dataclass(frozen=True)
class ConceptFrame:
    """The objects on one frame, once final; ``index`` is the caller's frame index."""

    index: int
    objects: tuple[ConceptObject, ...]


@dataclass(frozen=True)
class Held:
    """What a concept tracker holds between frames: frames, per-object tracker outputs (one per object
    and frame), frames awaiting their final form, and the bytes of every tensor among them."""

    frames: int
    outputs: int
    pending: int
    bytes: int


def split_categories(caption: str) -> tuple[str, ...]:
    """The categories of a caption, once each: ``"Swan. duck."`` -> ``("swan", "duck")``."""
    return tuple(dict.fromkeys(normalize_caption(caption).rstrip(".").split(". ")))


def _check_probability(name: str, value: float | None, *, open_interval: bool = False) -> None:
    if value is None:
        return
    ok = 0.0 < value < 1.0 if open_interval else 0.0 <= value <= 1.0
    if not ok:
        raise InputError(f"{name} must be a probability {'strictly ' if open_interval else ''}between 0 and 1, "
                         f"got {value}")


def _check_count(name: str, value: int | None, minimum: int) -> None:
    if value is not None and (not isinstance(value, int) or value < minimum):
        raise InputError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def _keep_only(output: dict, keys: tuple[str, ...]) -> None:
    for key in [k for k in output if k not in keys]:
        del output[key]


def _tensor_bytes(value: Any, seen: set[int]) -> int:
    """Bytes of the distinct tensor storages reachable through mappings, lists, tuples and sets."""
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(_tensor_bytes(item, seen) for item in value)
    return 0


@functools.cache
def _stream_session_class() -> type:
    from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

    class StreamSession(Sam3VideoInferenceSession):
        """A session that holds only the frame being processed. transformers reads ``num_frames`` (its
        count of held frames) as the video's length: it attends to min(num_frames, 16) object pointers
        and to no frame index beyond it. A stream's length is unknown, so it answers "longer than any
        index", as transformers' own streaming mode assumes."""

        @property
        def num_frames(self) -> int:
            return 2**62

    return StreamSession


@dataclass
class _Pending:
    """A processed frame awaiting the end of its hotstart window: SAM 3's raw per-object outputs."""

    index: int
    masks: dict[int, torch.Tensor]  # SAM 3 object id -> low-resolution mask logits, 1×h×w
    scores: dict[int, float]  # detection probability
    tracker_scores: dict[int, float]  # this frame's tracker probability (new objects: detection's)


class ConceptTracker:
    """Detect and track every instance of text categories through a streamed video with SAM 3.

    ``weights``: :func:`~samtrack.models.sam3.load_sam3` with ``role="concept"`` (shared read-only:
    each tracker keeps its own thresholds). ``categories``: a caption such as ``"swan. duck"``, one text
    prompt per category. The thresholds default to the checkpoint's (SAM 3's: detection 0.5, new object
    0.7, NMS IoU 0.1, holes and islands of 16 low-resolution pixels, hotstart 15 frames, 10000 objects);
    ``mask_threshold`` is the mask probability above which a pixel belongs to an object (SAM 3's 0.5).

    Feed the frames of one video in order with :meth:`push`; call :meth:`finish` at its end. The first
    pushed index may be any frame (a resumed run starts at its first unsaved frame). Track ids count
    from 1 for each stream; a :meth:`push` after :meth:`finish` starts a new stream.
    """

    def __init__(self, weights: Sam3Weights, categories: str, *, detection_threshold: float | None = None,
                 new_object_threshold: float | None = None, nms_iou: float | None = None,
                 mask_threshold: float = 0.5, fill_hole_area: int | None = None, hotstart_delay: int | None = None,
                 max_objects: int | None = None) -> None:
        if weights.role != "concept":
            raise ModelError(f"concept tracking needs SAM 3 loaded with role='concept', not {weights.role!r}")
        _check_probability("detection_threshold", detection_threshold)
        _check_probability("new_object_threshold", new_object_threshold)
        _check_probability("nms_iou", nms_iou)
        _check_probability("mask_threshold", mask_threshold, open_interval=True)
        _check_count("fill_hole_area", fill_hole_area, 0)
        _check_count("hotstart_delay", hotstart_delay, 0)
        _check_count("max_objects", max_objects, 1)
        # A shallow copy shares every weight and submodule with `weights.model` and owns the plain
        # attributes Sam3VideoModel reads its thresholds from, so trackers never change each other's.
        self._model = copy.copy(weights.model)
        settings = {"score_threshold_detection": detection_threshold, "new_det_thresh": new_object_threshold,
                    "det_nms_thresh": nms_iou, "fill_hole_area": fill_hole_area, "hotstart_delay": hotstart_delay,
                    "max_num_objects": max_objects}
        for name, value in settings.items():
            if value is not None:
                setattr(self._model, name, value)
        # SAM 3 requires its hotstart counts to fit in the window (a shorter window shortens them).
        self._model.hotstart_unmatch_thresh = min(self._model.hotstart_unmatch_thresh, self._model.hotstart_delay)
        self._model.hotstart_dup_thresh = min(self._model.hotstart_dup_thresh, self._model.hotstart_delay)
        self._processor = weights.processor
        self._device = weights.device
        self._mask_logit = math.log(mask_threshold / (1.0 - mask_threshold))
        use_portable_postprocessing()
        self._categories = split_categories(categories)
        self.model_type = weights.model_type  # config.json's model_type of the checkpoint (sam3_video)
        self.precision = weights.precision
        self._check_categories(self._categories)
        self._model.build_outputs = self._build_outputs
        self._start()

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories searched for on every frame, in the order given."""
        return self._categories

    @property
    def hotstart_delay(self) -> int:
        """Frames a result waits before it is final: frame i is returned by the push of frame
        ``i + hotstart_delay - 1`` (or at once when the delay is 0)."""
        return self._model.hotstart_delay

    def add_categories(self, caption: str) -> tuple[str, ...]:
        """Search for more categories from the next pushed frame on; returns every category now searched."""
        new = tuple(c for c in split_categories(caption) if c not in self._categories)
        self._check_categories(new)
        self._categories += new
        if new:
            self._processor.add_text_prompt(self._session, list(new))
        return self._categories

    def push(self, index: int, frame: np.ndarray) -> list[ConceptFrame]:
        """Process the frame with index ``index`` (RGB uint8 H×W×3, the index after the previous push's);
        returns the frames that just became final, oldest first (usually none for the first
        ``hotstart_delay - 1`` pushes)."""
        check_frame(frame, self._size)
        if self._first is None:
            self._first, self._size = index, frame.shape[:2]
            self._session.video_height, self._session.video_width = self._size
        elif index != self._first + self._count:
            raise InputError(f"frame {index} pushed after frame {self._first + self._count - 1}: push a video's "
                             "frames in order, each once (after finish(), a push starts a new video)")
        local = self._count  # SAM 3's frame index: a stream starts at 0, whatever the caller's index
        self._frame_objects = list(self._session.obj_ids)
        with torch.inference_mode():
            # The processor wraps the array in a tensor, which must be writable (decoded video frames are not).
            pixels = self._processor(images=frame if frame.flags.writeable else frame.copy(),
                                     return_tensors="pt").pixel_values[0]
            self._session.add_new_frame(pixels, local)
            out = self._model(self._session, frame_idx=local)
        self._count += 1
        self._pending.append(self._pend(index, out))
        self._prune(local)
        final = []
        while len(self._pending) >= max(self.hotstart_delay, 1):
            final.append(self._finalize(self._pending.popleft()))
        return final

    def finish(self) -> list[ConceptFrame]:
        """The frames still awaiting their final form, in order; ends the stream."""
        final = [self._finalize(pending) for pending in self._pending]
        self._start()
        return final

    def held(self) -> Held:
        """What this tracker holds now (see :class:`Held`)."""
        session = self._session
        outputs = sum(len(per_obj[kind]) for per_obj in session.output_dict_per_obj.values()
                      for kind in ("cond_frame_outputs", "non_cond_frame_outputs"))
        frames = len(session.processed_frames or {})
        held = [vars(session), vars(session.cache), [vars(pending) for pending in self._pending]]
        return Held(frames, outputs, len(self._pending), _tensor_bytes(held, set()))

    # -- internals --

    def _start(self) -> None:
        """A new stream: a fresh SAM 3 session searching the categories, nothing pending."""
        self._session = _stream_session_class()(inference_device=self._device, inference_state_device=self._device,
                                                video_storage_device=self._device, dtype=self._model.dtype)
        self._processor.add_text_prompt(self._session, list(self._categories))
        self._pending: deque[_Pending] = deque()
        self._first: int | None = None
        self._size: tuple[int, int] | None = None
        self._count = 0  # frames pushed in this stream
        self._track_ids: dict[int, int] = {}  # SAM 3 object id -> track id
        self._frame_objects: list[int] = []  # SAM 3's objects as the frame being processed began

    def _check_categories(self, categories: tuple[str, ...]) -> None:
        for category in categories:
            tokens = len(self._processor.tokenizer(category)["input_ids"])
            if tokens > TEXT_TOKENS:
                raise InputError(f"the category {category!r} is {tokens} tokens long; SAM 3 reads at most "
                                 f"{TEXT_TOKENS}: shorten it")

    def _build_outputs(self, inference_session: Any, *args: Any, **kwargs: Any) -> dict:
        """Sam3VideoModel.build_outputs given the objects its tracker masks belong to.

        transformers 5.25 pairs the tracker's mask rows (one per object alive as the frame began) with
        the object list as this frame's additions and removals left it: on a frame where the hotstart
        step removes an object, every object after it gets its predecessor's mask, and its tracker
        score. The frame's own list fixes both; ``forward`` sets the new list right after.
        """
        inference_session.obj_ids = list(self._frame_objects)
        return type(self._model).build_outputs(self._model, inference_session, *args, **kwargs)

    def _pend(self, index: int, out: Any) -> _Pending:
        """This frame's raw outputs (copied: the session reuses the dicts), without the objects it hides,
        and those removed by this frame's hotstart step taken out of every pending frame."""
        removed = set(out.removed_obj_ids)
        hidden = removed | set(out.suppressed_obj_ids or ())
        for pending in self._pending:
            for obj_id in removed & pending.masks.keys():
                del pending.masks[obj_id]
        masks = {obj_id: mask for obj_id, mask in out.obj_id_to_mask.items() if obj_id not in hidden}
        return _Pending(index, masks, {obj_id: float(out.obj_id_to_score[obj_id]) for obj_id in masks},
                        {obj_id: float(out.obj_id_to_tracker_score.get(obj_id, 0.0)) for obj_id in masks})

    def _finalize(self, pending: _Pending) -> ConceptFrame:
        """Masks at frame size (SAM 3's processor: bilinear upsampling, empty masks dropped, overlaps
        within a category given to the object the tracker is surest of) with labels and track ids."""
        masks = pending.masks if self._mask_logit == 0.0 else {
            obj_id: mask - self._mask_logit for obj_id, mask in pending.masks.items()}
        outputs = {"obj_id_to_mask": masks, "obj_id_to_score": pending.scores,
                   "obj_id_to_tracker_score": pending.tracker_scores, "suppressed_obj_ids": set()}
        with torch.inference_mode():
            result = self._processor.postprocess_outputs(self._session, outputs)
        labels = {obj_id: text for text, obj_ids in result["prompt_to_obj_ids"].items() for obj_id in obj_ids}
        objects = []
        for obj_id, score, mask in zip(result["object_ids"].tolist(), result["scores"].tolist(), result["masks"]):
            track_id = self._track_ids.setdefault(obj_id, len(self._track_ids) + 1)
            objects.append(ConceptObject(track_id, labels[obj_id], float(score), mask.cpu().numpy()))
        return ConceptFrame(pending.index, tuple(sorted(objects, key=lambda o: o.track_id)))

    def _prune(self, done: int) -> None:
        """Drop what no frame after ``done`` reads (see the module docstring)."""
        session, config = self._session, self._model.tracker_model.config
        session.processed_frames.clear()
        session.cache.clear_all()  # the finished frame's vision features (the next frame computes its own)
        memory_from = done + 1 - (config.num_maskmem - 1)
        pointers_from = done + 1 - (config.max_object_pointers_in_encoder - 1)
        for per_obj in session.output_dict_per_obj.values():
            past = per_obj["non_cond_frame_outputs"]
            for frame_idx in list(past):
                if frame_idx < pointers_from:
                    del past[frame_idx]
                else:
                    _keep_only(past[frame_idx], _OUTPUT_KEYS_FOR_MEMORY if frame_idx >= memory_from
                               else _OUTPUT_KEYS_FOR_POINTERS)
            cond = per_obj["cond_frame_outputs"]
            attended = sorted(cond)[-config.max_cond_frame_num:] if config.max_cond_frame_num > 0 else list(cond)
            for frame_idx in list(cond):
                if frame_idx in attended or frame_idx >= memory_from:
                    _keep_only(cond[frame_idx], _OUTPUT_KEYS_FOR_MEMORY)
                else:
                    del cond[frame_idx]
        for per_obj in (*session.mask_inputs_per_obj.values(), *session.frames_tracked_per_obj.values()):
            per_obj.clear()  # read on their own frame only
        for per_frame in (session.obj_id_to_tracker_score_frame_wise, session.suppressed_obj_ids):
            for frame_idx in [f for f in per_frame if f <= done]:
                del per_frame[frame_idx]
        self._prune_hotstart(done)

    def _prune_hotstart(self, done: int) -> None:
        """Forget removed objects, and the hotstart counts of objects no later frame can remove (first
        seen at or before ``done + 1 - hotstart_delay``); their keys stay, as SAM 3 iterates them."""
        session = self._session
        removed, session.removed_obj_ids = session.removed_obj_ids, set()
        for per_obj in (session.obj_first_frame_idx, session.trk_keep_alive, session.obj_id_to_score,
                        session.unmatched_frame_inds):
            for obj_id in removed & per_obj.keys():
                del per_obj[obj_id]
        settled = done + 1 - self.hotstart_delay
        for obj_id, frames in session.unmatched_frame_inds.items():
            if session.obj_first_frame_idx[obj_id] <= settled:
                frames.clear()
        for pair in list(session.overlap_pair_to_frame_inds):
            if pair[1] in removed or session.obj_first_frame_idx[pair[1]] <= settled:
                del session.overlap_pair_to_frame_inds[pair]
