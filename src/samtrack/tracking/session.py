"""The segment-and-track session: objects, prompts on any frame, propagation, roll back, resume.

A `Session` ties a frame source, a segmenter, a propagator and a run directory together:

    s = Session("clip.mp4", "runs/clip")                  # default models, SAM-Track settings
    s.run_auto()                                          # SAM-Track's automatic mode
    # or interactively:
    a = s.add_object(0, points=[(420, 240)], labels=[1], label="swan")
    s.propagate(0)                                        # forward from frame 0 to the end
    s.add_object(30, box=(10, 20, 200, 220))              # roll back to frame 30, add an object there
    s.propagate(30)                                       # frames < 30 stay exactly as they were
    s.propagate_backward(30)                              # and carry it towards frame 0 as well
    s.finalize()                                          # overlay video/GIF, zip, RLE JSON, records

Masks live on disk in `<out>/masks` (one palette PNG per frame), so memory stays bounded on long
videos; `<out>/session.json` records objects and the tracker's timeline so an interrupted run resumes
with exactly the masks an uninterrupted one would have produced.
"""

from __future__ import annotations

import copy
import json
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samtrack.errors import InputError
from samtrack.io.atomic import atomic_path
from samtrack.io.outputs import RunWriter
from samtrack.io.sources import FrameSource, open_source
from samtrack.tracking.discovery import find_new_objects
from samtrack.tracking.settings import Settings
from samtrack.tracking.store import MaskStore

Progress = Callable[[int, int, dict], None]  # (frames done, frames total, info)
SESSION_FILE = "session.json"


@dataclass
class TrackedObject:
    """One object of the session, under a stable id."""

    id: int
    label: str
    frame: int  # where it was added
    prompt: dict  # the prompt that made it (kind + parameters)


@dataclass
class _Action:
    """An undoable change: masks of some frames and the object registry, before and after."""

    name: str
    masks: dict[int, tuple[bytes | None, bytes | None]] = field(default_factory=dict)  # frame -> (before, after)
    objects: tuple[dict, dict] = ({}, {})
    next_id: tuple[int, int] = (1, 1)


def _pack(ids: np.ndarray | None) -> bytes | None:
    return None if ids is None else zlib.compress(ids.tobytes(), 1)


class Cancelled(Exception):
    """Raised inside a propagation loop when the caller's cancel check returns True."""


class Session:
    """An interactive or automatic segment-and-track run over one video or image sequence."""

    def __init__(self, source: str | Path | FrameSource, out_dir: str | Path, settings: Settings | None = None,
                 *, segmenter: Any = None, tracker: Any = None, detector: Any = None,
                 resume: bool = False) -> None:
        self.source = source if isinstance(source, FrameSource) else open_source(source)
        self.out_dir = Path(out_dir)
        self.settings = settings or Settings()
        self._segmenter = segmenter
        self._tracker = tracker
        self._detector = detector
        self._audio: Any = None
        self.objects: dict[int, TrackedObject] = {}
        self._next_id = 1
        self._undo: list[_Action] = []
        self._redo: list[_Action] = []
        # What the tracker's memory holds: frames start..cursor of a `mode` pass ("auto"/"forward").
        self._timeline: dict | None = None
        self._memory_live = False  # the tracker's memory matches the timeline (not after a restart)
        self.timings: dict[str, float] = {}
        state_file = self.out_dir / SESSION_FILE
        if state_file.exists() and not resume:
            raise InputError(f"{self.out_dir} already holds a run; pass resume=True (--resume) to continue it, "
                             "or choose another output directory")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run = RunWriter(self.out_dir, self.source, background=True)
        self.store = MaskStore(self.run)
        if resume and state_file.exists():
            self._load_state(state_file)

    # ----------------------------------------------------------------- models (loaded on first use)
    @property
    def segmenter(self) -> Any:
        if self._segmenter is None:
            from samtrack.models.segmenter import Segmenter

            self._segmenter = Segmenter.load(self.settings.segmenter, device=self.settings.device,
                                             dtype=self.settings.dtype)
        return self._segmenter

    @property
    def tracker(self) -> Any:
        if self._tracker is None:
            from samtrack.models.sam2video.loading import load_propagator

            s = self.settings
            self._tracker = load_propagator(s.tracker, checkpoint=s.tracker_checkpoint, device=s.device,
                                            long_term_mem_gap=s.long_term_mem_gap,
                                            max_len_long_term=s.max_len_long_term,
                                            num_memory_frames=s.num_memory_frames,
                                            max_conditioning_frames=s.max_conditioning_frames)
        return self._tracker

    # ----------------------------------------------------------------- frames and masks
    def __len__(self) -> int:
        return len(self.source)

    def _check_frame(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.source):
            raise InputError(f"frame index {index} is outside the video (frames 0..{len(self.source) - 1})")
        return int(index)

    def frame(self, index: int) -> np.ndarray:
        return self.source[self._check_frame(index)]

    def mask(self, index: int) -> np.ndarray:
        """The id mask of frame `index` (zeros where nothing has been segmented or tracked yet)."""
        ids = self.store.get(self._check_frame(index))
        if ids is None:
            return np.zeros((self.source.height, self.source.width), dtype=np.uint8)
        return ids

    # ----------------------------------------------------------------- objects and prompts
    def _prompt_mask(self, frame: np.ndarray, prompt: dict) -> np.ndarray:
        kind = prompt["kind"]
        seg = self.segmenter
        if kind == "click":
            return seg.click(frame, prompt["points"], prompt["labels"])
        if kind == "box":
            return seg.box(frame, prompt["box"])
        if kind == "stroke":
            return seg.stroke(frame, prompt["points"])
        raise InputError(f"unknown prompt kind {kind!r}")

    def add_object(self, frame_index: int, *, points: list | None = None, labels: list | None = None,
                   box: tuple | None = None, stroke: list | None = None, mask: np.ndarray | None = None,
                   label: str | None = None, obj_id: int | None = None) -> int:
        """Add an object on any frame (or, with `obj_id`, replace that object's mask there).

        Exactly one prompt: clicks (`points` with `labels`, 1 positive / 0 negative), a `box`
        (x0, y0, x1, y1), a brush `stroke` (list of (x, y)) or a boolean `mask`. The new mask is painted
        over what the frame holds. Returns the object id. Undoable.
        """
        index = self._check_frame(frame_index)
        given = [p is not None for p in (points, box, stroke, mask)]
        if sum(given) != 1:
            raise InputError("give exactly one prompt: points (with labels), box, stroke or mask")
        if obj_id is not None and obj_id not in self.objects:
            raise InputError(f"unknown object id {obj_id}; known ids: {sorted(self.objects) or 'none'}")
        if obj_id is None and self._next_id > self.settings.max_obj_num:
            raise InputError(f"too many objects: max_obj_num is {self.settings.max_obj_num}")
        frame = self.source[index]
        if mask is not None:
            obj_mask = np.asarray(mask).astype(bool)
            if obj_mask.shape != frame.shape[:2]:
                raise InputError(f"mask is {obj_mask.shape[1]}x{obj_mask.shape[0]}, the frame is "
                                 f"{frame.shape[1]}x{frame.shape[0]}")
            prompt: dict = {"kind": "mask", "frame": index}
        elif points is not None:
            if labels is None:
                labels = [1] * len(points)
            prompt = {"kind": "click", "frame": index, "points": [list(map(float, p)) for p in points],
                      "labels": [int(v) for v in labels]}
        elif box is not None:
            prompt = {"kind": "box", "frame": index, "box": [float(v) for v in box]}
        else:
            prompt = {"kind": "stroke", "frame": index, "points": [list(map(float, p)) for p in stroke]}
        if mask is None:
            obj_mask = self._prompt_mask(frame, prompt)
        if not obj_mask.any():
            raise InputError(f"the {prompt['kind']} prompt on frame {index} produced an empty mask")
        with self._action("add object" if obj_id is None else f"edit object {obj_id}", [index]):
            ids = self.mask(index).copy()
            if obj_id is None:
                obj_id = self._next_id
                self._next_id += 1
                self.objects[obj_id] = TrackedObject(obj_id, label or f"object {obj_id}", index, prompt)
            else:
                ids[ids == obj_id] = 0
                if label:
                    self.objects[obj_id].label = label
            ids[obj_mask] = obj_id
            self._set_mask(index, ids)
        return obj_id

    def segment_everything(self, frame_index: int) -> list[int]:
        """Segment everything on a frame; segments not already covered become new objects. Undoable."""
        index = self._check_frame(frame_index)
        segments = self.segmenter.everything(self.source[index], **self.settings.everything_args())
        with self._action("segment everything", [index]):
            ids = self.mask(index).copy()
            new_ids = self._register_new(ids, segments, index)
            self._set_mask(index, ids)
        return new_ids

    def remove_object(self, obj_id: int) -> None:
        """Remove an object from the registry and from every frame. Undoable."""
        if obj_id not in self.objects:
            raise InputError(f"unknown object id {obj_id}; known ids: {sorted(self.objects) or 'none'}")
        self.store.flush()
        frames = [i for i in range(len(self.source)) if self.store.has(i) and (self.store.get(i) == obj_id).any()]
        with self._action(f"remove object {obj_id}", frames):
            del self.objects[obj_id]
            for i in frames:
                ids = self.store.get(i).copy()
                ids[ids == obj_id] = 0
                self._set_mask(i, ids)

    def relabel(self, obj_id: int, label: str) -> None:
        if obj_id not in self.objects:
            raise InputError(f"unknown object id {obj_id}; known ids: {sorted(self.objects) or 'none'}")
        with self._action(f"relabel object {obj_id}", []):
            self.objects[obj_id].label = label

    def _register_new(self, ids: np.ndarray, segments: np.ndarray, index: int,
                      info: dict[int, dict] | None = None) -> list[int]:
        """Paint the segments not yet tracked into `ids` (in place) as fresh objects; return their ids.

        `info` maps a segment id to the label and prompt of the object it becomes (default: a
        segment-everything object)."""
        s = self.settings
        new = find_new_objects(ids, segments, self._next_id, min_new_obj_iou=s.min_new_obj_iou,
                               min_area=s.min_area, max_obj_num=s.max_obj_num)
        inside = new > 0
        pairs = np.unique(np.stack([new[inside], segments[inside]]), axis=1).T  # (object id, segment id)
        for obj_id, seg_id in pairs.tolist():
            meta = (info or {}).get(seg_id, {})
            self.objects[obj_id] = TrackedObject(obj_id, meta.get("label") or f"object {obj_id}", index,
                                                 meta.get("prompt") or {"kind": "everything", "frame": index})
        added = [int(p) for p in pairs[:, 0]]
        if added:
            self._next_id = max(added) + 1
            np.copyto(ids, new, where=inside)
        return added

    # ----------------------------------------------------------------- text and audio grounding
    @property
    def detector(self) -> Any:
        if self._detector is None:
            from samtrack.models.grounding import Detector

            self._detector = Detector.load(self.settings.detector, device=self.settings.device)
        return self._detector

    def _text_segments(self, index: int, caption: str) -> tuple[np.ndarray, dict[int, dict]]:
        """Grounding DINO boxes for `caption` on frame `index`, each cut by a SAM box prompt."""
        s = self.settings
        frame = self.source[index]
        detections = self.detector.detect(frame, caption, box_threshold=s.box_threshold,
                                          text_threshold=s.text_threshold, box_size_threshold=s.box_size_threshold)
        segments = np.zeros(frame.shape[:2], dtype=np.uint8)
        info: dict[int, dict] = {}
        # Painted from the least to the most confident, so the best detection keeps overlapping pixels.
        for seg_id, det in reversed(list(enumerate(detections[:255], 1))):
            segments[self.segmenter.box(frame, det.box)] = seg_id
            info[seg_id] = {"label": det.phrase or caption.strip(" ."),
                            "prompt": {"kind": "text", "frame": index, "caption": caption,
                                       "box": [round(v, 2) for v in det.box], "score": round(det.score, 4)}}
        return segments, info

    def add_objects_from_text(self, frame_index: int, caption: str) -> list[int]:
        """Detect what `caption` names on a frame ("swan. water") and add every instance not yet
        tracked there as a new object labelled with its phrase. Undoable. Returns the new ids."""
        index = self._check_frame(frame_index)
        segments, info = self._text_segments(index, caption)
        with self._action(f"text {caption!r}", [index]):
            ids = self.mask(index).copy()
            added = self._register_new(ids, segments, index, info)
            self._set_mask(index, ids)
        return added

    def sounds(self, start: float | None = None, end: float | None = None) -> list[tuple[str, float]]:
        """The AudioSet labels of the input's soundtrack (or a time window), most probable first."""
        from samtrack.models.audio import AudioTagger, decode_audio

        if not self.source.has_audio:
            raise InputError(f"{self.source.path} has no audio track, so there is no sound to ground")
        if self._audio is None:
            self._audio = AudioTagger.load(self.settings.audio_model, device=self.settings.device)
        waveform, rate = decode_audio(self.source.path, start, end)
        return self._audio.tag(waveform, rate, self.settings.label_num, self.settings.audio_threshold)

    def add_objects_from_audio(self, frame_index: int, start: float | None = None,
                               end: float | None = None) -> tuple[str, list[int]]:
        """Ground the most probable sound label as a text prompt on a frame; returns (label, new ids)."""
        labels = self.sounds(start, end)
        if not labels:
            raise InputError(f"no sound label in {self.source.path} is above the threshold "
                             f"{self.settings.audio_threshold}")
        return labels[0][0], self.add_objects_from_text(frame_index, labels[0][0])

    # ----------------------------------------------------------------- undo / redo
    class _ActionScope:
        def __init__(self, session: Session, name: str, frames: list[int]) -> None:
            self.session, self.name, self.frames = session, name, frames

        def __enter__(self) -> None:
            s = self.session
            self.before_masks = {i: _pack(s.store.get(i)) for i in self.frames}
            self.before_objects = copy.deepcopy(s.objects)
            self.before_next = s._next_id

        def __exit__(self, exc_type, exc, tb) -> None:
            s = self.session
            if exc_type is not None:  # failed half way: put everything back
                s.objects, s._next_id = self.before_objects, self.before_next
                for i, packed in self.before_masks.items():
                    s._restore_mask(i, packed)
                return
            action = _Action(self.name, {i: (b, _pack(s.store.get(i))) for i, b in self.before_masks.items()},
                             ({k: asdict(v) for k, v in self.before_objects.items()},
                              {k: asdict(v) for k, v in s.objects.items()}),
                             (self.before_next, s._next_id))
            s._undo.append(action)
            s._redo.clear()
            s._save_state()

    def _action(self, name: str, frames: list[int]) -> _ActionScope:
        return Session._ActionScope(self, name, frames)

    def undo(self) -> str | None:
        """Revert the last prompt action (add, edit, remove, relabel, segment everything); its name."""
        return self._step(self._undo, self._redo, 0)

    def redo(self) -> str | None:
        return self._step(self._redo, self._undo, 1)

    def _step(self, source: list[_Action], target: list[_Action], side: int) -> str | None:
        if not source:
            return None
        action = source.pop()
        for i, pair in action.masks.items():
            self._restore_mask(i, pair[side])
        self.objects = {int(k): TrackedObject(**v) for k, v in action.objects[side].items()}
        self._next_id = action.next_id[side]
        target.append(action)
        self._save_state()
        return action.name

    def _restore_mask(self, index: int, packed: bytes | None) -> None:
        if packed is None:
            self.store.delete(index)
        else:
            shape = (self.source.height, self.source.width)
            self._set_mask(index, np.frombuffer(zlib.decompress(packed), np.uint8).reshape(shape).copy())

    def _set_mask(self, index: int, ids: np.ndarray) -> None:
        self.store.put(index, ids)
        if self._timeline is not None and index <= self._timeline["cursor"]:
            self._timeline = None  # the tracker's memory no longer matches the stored masks
            self._memory_live = False

    # ----------------------------------------------------------------- propagation
    def _frames(self, indices: range) -> Iterator[tuple[int, np.ndarray]]:
        """Decode frames in a background thread, a few ahead of the consumer."""
        q: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()

        def produce() -> None:
            try:
                for i in indices:
                    if stop.is_set():
                        return
                    q.put((i, self.source[i]))
            except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
                q.put(exc)
                return
            q.put(None)

        thread = threading.Thread(target=produce, name="samtrack-decode", daemon=True)
        thread.start()
        try:
            while (item := q.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # unblock the producer if it waits on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(0.05)

    def _end(self, end: int | None, default: int) -> int:
        return default if end is None else self._check_frame(end)

    def propagate(self, start: int, end: int | None = None, *, progress: Progress | None = None,
                  cancel: Callable[[], bool] | None = None) -> None:
        """Track every object forward from frame `start` (its mask is the reference) to `end`.

        Frames after `start` are overwritten; frames before it stay exactly as they are (roll back:
        correct or add objects on frame t, then `propagate(t)`). If the last forward pass stopped at
        `start` and nothing changed since, tracking continues with the tracker's memory.
        """
        start = self._check_frame(start)
        end = self._end(end, len(self.source) - 1)
        if end < start:
            raise InputError(f"end frame {end} is before start frame {start}; use propagate_backward")
        ref = self.store.get(start)
        if ref is None or not ref.any():
            raise InputError(f"frame {start} has no objects to propagate; add one there first")
        tl = self._timeline
        if tl and tl["mode"] == "forward" and tl["cursor"] == start and self._memory_live:
            self._forward(start + 1, end, {}, progress, cancel)
        else:
            self._timeline = {"mode": "forward", "start": start, "cursor": start - 1, "keyframes": [start]}
            self._forward(start, end, {start: lambda i, ids: self.store.get(i)}, progress, cancel)

    def track_prompts(self, prompts: dict[int, list[dict]], end: int | None = None, *,
                      progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> None:
        """Apply prompts on several frames and track, in one forward pass (SAM-Track's key frames).

        `prompts` maps a frame index to a list of `add_object` keyword dicts. On each prompt frame after
        the first, the tracked mask is computed, the prompts are painted onto it and the result becomes
        a new reference, keeping the tracker's memory of the frames before (as SAM-Track does).
        """
        frames = sorted(self._check_frame(f) for f in prompts)
        if not frames:
            raise InputError("no prompts given")
        end = self._end(end, len(self.source) - 1)
        self._timeline = {"mode": "forward", "start": frames[0], "cursor": frames[0] - 1, "keyframes": frames}
        keyframe = self._prompt_keyframe(prompts)
        self._forward(frames[0], end, {f: keyframe for f in frames}, progress, cancel)

    def _prompt_keyframe(self, prompts: dict[int, list[dict]]) -> Callable:
        def keyframe(i: int, ids: np.ndarray | None) -> np.ndarray:
            if ids is not None:
                self.store.put(i, ids)
            for kwargs in prompts[i]:
                if "text" in kwargs:
                    self.add_objects_from_text(i, kwargs["text"])
                else:
                    self.add_object(i, **kwargs)
            return self.mask(i)

        return keyframe

    def run_auto(self, end: int | None = None, *, categories: str | None = None,
                 progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> None:
        """SAM-Track's automatic mode: segment everything on frame 0 and every `sam_gap` frames, add
        the segments not yet tracked as new objects (fresh ids), and track everything in between.

        With `categories` ("swan. duck"), key frames detect those categories with Grounding DINO
        instead of segmenting everything (SAM-Track's demo_instseg), and new objects get their label.

        Resumable: on a session opened with resume=True, the tracker's memory is rebuilt from the
        stored masks and tracking continues where it stopped.
        """
        end = self._end(end, len(self.source) - 1)
        tl = self._timeline
        if tl is not None and tl["mode"] == "auto":
            categories = categories or tl.get("categories")
            first = tl["cursor"] + 1 if self._memory_live else self._replay() + 1
        elif self.objects or self.store.has(0):
            raise InputError("automatic mode starts from an empty run; this run already holds objects")
        else:
            first = 0
            self._timeline = {"mode": "auto", "start": 0, "cursor": -1, "keyframes": [], "categories": categories}
        gap = self.settings.sam_gap

        def keyframe(i: int, ids: np.ndarray | None) -> np.ndarray:
            t = time.perf_counter()
            if categories:
                segments, info = self._text_segments(i, categories)
                self._add_time("detect", time.perf_counter() - t)
            else:
                segments, info = self.segmenter.everything(self.source[i], **self.settings.everything_args()), None
                self._add_time("segment_everything", time.perf_counter() - t)
            ids = np.zeros_like(segments) if ids is None else ids.copy()
            t = time.perf_counter()
            self._register_new(ids, segments, i, info)
            self._add_time("merge_new_objects", time.perf_counter() - t)
            return ids

        keyframes = {i: keyframe for i in range(first + (-first % gap), end + 1, gap)}
        self._forward(first, end, keyframes, progress, cancel)

    def _forward(self, first: int, end: int, keyframes: dict[int, Callable], progress: Progress | None,
                 cancel: Callable[[], bool] | None) -> None:
        """Track frames first..end; on a key frame, `keyframes[i](i, tracked_ids_or_None)` gives the new
        reference mask (tracked without a memory update, then re-referenced); other frames are tracked
        and written into memory. Records the timeline for resume."""
        tl = self._timeline
        assert tl is not None
        t0 = time.perf_counter()
        total = end - tl["start"] + 1
        try:
            for i, frame in self._frames(range(first, end + 1)):
                if cancel is not None and cancel():
                    break
                if i in keyframes:
                    if i == tl["start"]:
                        self.tracker.reset()
                        ids = keyframes[i](i, None)
                    else:
                        ids = keyframes[i](i, self.tracker.track(frame))
                    self.tracker.add_reference(frame, ids)
                    self._memory_live = True
                    if tl["mode"] == "auto":
                        tl["keyframes"].append(i)
                else:
                    ids = self.tracker.track(frame)
                    self.tracker.update_memory(ids)
                self.store.put(i, ids)
                tl["cursor"] = i
                if i in keyframes:
                    self._save_state()  # objects found here must be on record before later frames
                if progress:
                    progress(i - tl["start"] + 1, total, {"frame": i, "objects": len(self.objects)})
        finally:
            self._checkpoint()
            self._add_time("track", time.perf_counter() - t0)

    def _replay(self) -> int:
        """Rebuild the tracker's memory of an interrupted forward pass from the stored masks.

        Replays the calls of the original pass (reference, key frames tracked then re-referenced, memory
        updates), fed with the masks it wrote, so the memory, and every mask after it, is identical to
        an uninterrupted run. Objects found after the last stored frame are dropped (they are found
        again). Returns the last frame replayed (start - 1 when nothing was stored).
        """
        tl = self._timeline
        assert tl is not None
        last = tl["cursor"]
        while last >= tl["start"] and not self.store.has(last):
            last -= 1
        redone = [o.id for o in self.objects.values()
                  if o.frame > last and (tl["mode"] == "auto" or o.frame in tl["keyframes"])]
        for obj_id in redone:
            del self.objects[obj_id]
        self._next_id = max(self.objects, default=0) + 1
        keyframes = [k for k in tl["keyframes"] if k <= last]
        tl.update(cursor=last, keyframes=keyframes if tl["mode"] == "auto" else tl["keyframes"])
        if last < tl["start"]:
            return last
        trk = self.tracker
        for i, frame in self._frames(range(tl["start"], last + 1)):
            ids = self.store.get(i)
            if i == tl["start"]:
                trk.reset()
            elif i in keyframes:
                trk.track(frame)
            else:
                trk.track(frame)
                trk.update_memory(ids)
                continue
            trk.add_reference(frame, ids)
        self._memory_live = True
        return last

    def resume(self, prompts: dict[int, list[dict]] | None = None, *, progress: Progress | None = None,
               cancel: Callable[[], bool] | None = None) -> bool:
        """Continue the forward pass that was interrupted; False when there is nothing to continue.

        For a pass made by `track_prompts`, give the same `prompts`: those on frames the pass had not
        reached yet are applied when it gets there.
        """
        tl = self._timeline
        if tl is None:
            return False
        if tl["cursor"] >= len(self.source) - 1 and self.store.has(tl["cursor"]):
            return True  # the pass had finished
        if tl["mode"] == "auto":
            self.run_auto(progress=progress, cancel=cancel)
            return True
        last = self._replay()
        if last < tl["start"]:
            return False
        later = {f: p for f, p in (prompts or {}).items() if f > last}
        self._forward(last + 1, len(self.source) - 1, {f: self._prompt_keyframe(later) for f in later},
                      progress, cancel)
        return True

    def propagate_backward(self, start: int, end: int = 0, *, objects: list[int] | None = None,
                           progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> None:
        """Track objects from frame `start` towards frame `end` (< start), filling earlier frames.

        By default the objects added on frame `start` are carried back; earlier frames keep every pixel
        they already hold and gain the carried objects only where they hold background.
        """
        start = self._check_frame(start)
        end = self._check_frame(end)
        if end >= start:
            raise InputError(f"backward propagation needs end < start, got start {start}, end {end}")
        chosen = objects if objects is not None else [o.id for o in self.objects.values() if o.frame == start]
        unknown = [o for o in chosen if o not in self.objects]
        if unknown:
            raise InputError(f"unknown object ids {unknown}")
        ref = self.mask(start)
        ref = np.where(np.isin(ref, chosen), ref, 0).astype(np.uint8)
        if not ref.any():
            raise InputError(f"none of the objects {chosen or '(none given)'} is on frame {start}")
        t0 = time.perf_counter()
        self._timeline = None
        self._memory_live = False
        self.tracker.reset()
        self.tracker.add_reference(self.source[start], ref)
        total = start - end
        try:
            for done, (i, frame) in enumerate(self._frames(range(start - 1, end - 1, -1)), 1):
                if cancel is not None and cancel():
                    break
                carried = self.tracker.track(frame)
                # Only the carried objects: the tracker sees no others, but ids below them are open slots.
                carried = np.where(np.isin(carried, chosen), carried, 0).astype(np.uint8)
                self.tracker.update_memory(carried)
                ids = self.mask(i).copy()
                np.copyto(ids, carried, where=(ids == 0) & (carried > 0))
                self.store.put(i, ids)
                if progress:
                    progress(done, total, {"frame": i, "objects": len(self.objects)})
        finally:
            self._checkpoint()
            self._add_time("track", time.perf_counter() - t0)

    # ----------------------------------------------------------------- state, outputs
    def _add_time(self, stage: str, seconds: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds

    def _checkpoint(self) -> None:
        self.store.flush()
        self._save_state()

    def _save_state(self) -> None:
        state = {
            "version": 1,
            "source": str(self.source.path),
            "frames": len(self.source),
            "settings": self.settings.to_dict(),
            "objects": {str(k): asdict(v) for k, v in self.objects.items()},
            "next_id": self._next_id,
            "timeline": self._timeline,
        }
        with atomic_path(self.out_dir / SESSION_FILE) as tmp:
            tmp.write_text(json.dumps(state, indent=1))

    def _load_state(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
            objects = {int(k): TrackedObject(**v) for k, v in state["objects"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path} is not a samtrack session file ({exc})") from exc
        if state.get("frames") != len(self.source):
            raise InputError(f"{path} belongs to a run over {state.get('frames')} frames, but the input has "
                             f"{len(self.source)}: resume with the same input")
        self.settings = Settings.from_dict(state.get("settings", {}))
        self.objects = objects
        self._next_id = int(state.get("next_id", max(objects, default=0) + 1))
        self._timeline = state.get("timeline")

    def finalize(self, *, video: bool = True, gif: bool = True, timings: dict | None = None,
                 progress: bool = True) -> dict[str, Path]:
        """Write the overlay video/GIF, masks.zip, masks_rle.json, objects.json and run.json.

        Frames that hold no mask yet (before the first prompt, after `end`) get an empty one.
        """
        empty = np.zeros((self.source.height, self.source.width), dtype=np.uint8)
        for i in range(len(self.source)):
            if not self.store.has(i):
                self.store.put(i, empty)
        self._checkpoint()
        s = self.settings
        objects = {k: {"label": o.label, "prompt": o.prompt, "added_on_frame": o.frame}
                   for k, o in self.objects.items()}
        models = {"segmenter": s.segmenter, "tracker": s.tracker, "tracker_checkpoint": s.tracker_checkpoint,
                  "device": s.device}
        return self.run.finalize(objects, s.to_dict(), models, {**self.timings, **(timings or {})},
                                 video=video, gif=gif, progress=progress)

    def close(self) -> None:
        self._checkpoint()
        self.store.close()
