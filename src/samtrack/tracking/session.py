"""The segment-and-track session: a thin front over the object registry, the undo history, the mask
store and the propagation loop, for one video or image sequence.

    pool = ModelPool()                                    # models loaded once, shared by sessions
    with Session("clip.mp4", "runs/clip", models=pool) as s:
        s.run_auto()                                      # SAM-Track's automatic mode
        # or interactively:
        a = s.add_object(0, points=[(420, 240)], labels=[1], label="swan")
        for r in s.iter_propagate(0):                     # streamed: r.index, r.ids, r.objects
            ...
        s.add_object(30, box=(10, 20, 200, 220))          # roll back to frame 30, add an object there
        s.propagate(30)                                   # frames < 30 stay exactly as they were
        s.propagate_backward(30)                          # and carry it towards frame 0 as well
        s.finalize()                                      # overlay video/GIF, zip, RLE JSON, records

Masks live on disk in `<out>/masks` (one palette PNG per frame), so memory stays bounded on long
videos; `<out>/session.json` records objects and the tracker's timeline so an interrupted run resumes
with exactly the masks an uninterrupted one would have produced. `cancel()` (from any thread) stops a
running propagation within one frame; it raises :class:`~samtrack.tracking.Cancelled`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from samtrack.errors import InputError, OutputError
from samtrack.io.atomic import DISK_FULL, atomic_path
from samtrack.io.outputs import RunWriter, frame_ranges
from samtrack.io.sources import FrameSource, open_source
from samtrack.models.pool import ModelPool
from samtrack.tracking import prompts as P
from samtrack.tracking.discovery import MAX_NEW_SHARE, text_segments
from samtrack.tracking.history import History
from samtrack.tracking.objects import ObjectRegistry, TrackedObject
from samtrack.tracking.propagation import Cancelled, FrameResult, Timeline, decoded, propagate
from samtrack.tracking.runrecord import (
    SESSION_FILE,
    RunRecord,
    discard_if_empty,
    open_run_dir,
    prompt_records,
    remove_outputs,
)
from samtrack.tracking.settings import Settings
from samtrack.tracking.store import MaskStore

if TYPE_CHECKING:
    from typing_extensions import Self

Progress = Callable[[int, int, dict], None]  # (frames done, frames total, info)


@dataclass(frozen=True)
class Status:
    """Where a session stands: ``idle``, ``running`` (a propagation), ``cancelled`` or ``closed``;
    the last frame propagated, and frames done / total of the current (or last) propagation."""

    state: str
    frame: int | None = None
    done: int = 0
    total: int = 0


class Session:
    """An interactive or automatic segment-and-track run over one video or image sequence.

    Args:
        source: a video file, an image folder, or an open :class:`FrameSource` (the session closes it).
        out_dir: the run directory (masks/, session.json, then the outputs of :meth:`finalize`).
        settings: SAM-Track's parameters and the models to use (default: :class:`Settings`()).
        models: the :class:`ModelPool` to take models from (None: a pool of this session's own).
        resume: continue the run in `out_dir` (its objects and timeline are read back; with `settings`
            None, its settings too). The input must be the one the run was made from.
        force: write into a non-empty directory that holds no run (samtrack's outputs there are replaced).
        allow_changes: let a resume change the run's settings, its prompts on frames not tracked yet and
            its last frame; without it such a resume is refused, saying what differs.
        segmenter, tracker, detector, audio_tagger: ready-made models to use instead of the pool's.

    The session holds an exclusive lock on `out_dir` until :meth:`close`: a second session or process
    writing there is refused at once. A session that wrote nothing leaves no run behind.
    """

    def __init__(self, source: str | Path | FrameSource, out_dir: str | Path, settings: Settings | None = None,
                 *, models: ModelPool | None = None, resume: bool = False, force: bool = False,
                 allow_changes: bool = False, segmenter: Any = None, tracker: Any = None,
                 detector: Any = None, audio_tagger: Any = None) -> None:
        self.out_dir = Path(out_dir)
        self.source = source if isinstance(source, FrameSource) else open_source(source)
        self.settings = settings or Settings()
        self.allow_changes = allow_changes
        self._dir_lock, state = open_run_dir(self.out_dir, resume=resume, force=force)
        try:
            self._open(state, settings, models, segmenter, tracker, detector, audio_tagger)
        except BaseException:
            discard_if_empty(self._dir_lock)
            raise

    def _open(self, state: dict | None, settings: Settings | None, models: ModelPool | None, segmenter: Any,
              tracker: Any, detector: Any, audio_tagger: Any) -> None:
        self._run_record = self._check_record(state, settings)
        self.models = models if models is not None else ModelPool()
        self._segmenter, self._tracker, self._detector, self._audio = segmenter, tracker, detector, audio_tagger
        self.registry = ObjectRegistry(self.settings.max_obj_num)
        self.history = History((self.source.height, self.source.width))
        self._timeline: Timeline | None = None  # what the tracker's memory holds
        self._memory_live = False  # the tracker's memory matches the timeline (not after a restart)
        self.timings: dict[str, float] = {}
        self._lock = threading.RLock()  # one step at a time: a prompt, or one frame of a propagation
        self._read_lock = threading.Lock()  # a video decoder serves one thread at a time
        self._cancel = threading.Event()
        self._running = False
        self._in_keyframe = False  # a running pass applies a key frame's prompts itself
        self._status = Status("idle")
        self.run = RunWriter(self.out_dir, self.source, background=True)
        self.store = MaskStore(self.run)
        self._had_state = state is not None
        self._finalized_at = -1  # store.writes when the outputs were last written (-1: never)
        if state is not None:
            self._load_state(state)

    def _check_record(self, state: dict | None, settings: Settings | None) -> RunRecord:
        """The record of this run; on a resume, refuse another input and (unless allowed) new settings."""
        record = RunRecord.of(self.source, self.settings)
        if state is None:
            return record
        if state.get("frames") != len(self.source):
            raise InputError(f"{self.source.path} is not the input of the run in {self.out_dir} ({state.get('frames')} "
                             f"frames then, {len(self.source)} now); resume with that input, or write a new run to "
                             "another output directory")
        recorded = RunRecord.from_state(state)
        if recorded is None:  # a run from before records were kept: its settings, as then
            recorded = RunRecord(record.input, dict(state.get("settings") or {}))
            settings = None
        problem = record.input_problem(recorded, self.out_dir, self.source.path)
        if problem:
            raise InputError(problem)
        if settings is None:
            self.settings = Settings.from_dict(recorded.settings)
        else:
            changes = record.setting_changes(recorded)
            if changes and not self.allow_changes:
                raise InputError(f"cannot resume {self.out_dir}: it was made with other settings ("
                                 f"{'; '.join(changes)}); give the options it was made with, or pass "
                                 "allow_changes=True (--allow-changes) to continue with the new values")
        recorded.input, recorded.settings = record.input, self.settings.to_dict()
        return recorded

    # ----------------------------------------------------------------- models (loaded on first use)
    @property
    def segmenter(self) -> Any:
        if self._segmenter is None:
            self._segmenter = self.models.segmenter(self.settings)
        return self._segmenter

    @property
    def tracker(self) -> Any:
        if self._tracker is None:
            self._tracker = self.models.tracker(self.settings)
        return self._tracker

    @property
    def detector(self) -> Any:
        if self._detector is None:
            self._detector = self.models.detector(self.settings)
        return self._detector

    @property
    def audio_tagger(self) -> Any:
        if self._audio is None:
            self._audio = self.models.audio_tagger(self.settings)
        return self._audio

    # ----------------------------------------------------------------- frames, masks, state
    def __len__(self) -> int:
        return len(self.source)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def objects(self) -> MappingProxyType[int, TrackedObject]:
        """The objects by id (read-only view; change them with the methods below)."""
        return MappingProxyType(self.registry.objects)

    @property
    def status(self) -> Status:
        return self._status

    @property
    def can_undo(self) -> bool:
        return self.history.can_undo

    @property
    def can_redo(self) -> bool:
        return self.history.can_redo

    @property
    def cursor(self) -> int | None:
        """The last frame of the forward pass the tracker's memory holds (None when there is none)."""
        tl = self._timeline
        return tl.cursor if tl is not None and tl.cursor >= tl.start else None

    def _check_frame(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.source):
            raise InputError(f"frame index {index} is outside the video (frames 0..{len(self.source) - 1})")
        return int(index)

    def _read(self, index: int) -> np.ndarray:
        with self._read_lock:
            return self.source[index]

    def frame(self, index: int) -> np.ndarray:
        return self._read(self._check_frame(index))

    def mask(self, index: int) -> np.ndarray:
        """The id mask of frame `index` (zeros where nothing has been segmented or tracked yet)."""
        with self._lock:
            ids = self.store.get(self._check_frame(index))
        if ids is None:
            return np.zeros((self.source.height, self.source.width), dtype=np.uint8)
        return ids

    def _set_mask(self, index: int, ids: np.ndarray | None) -> None:
        if ids is None:
            self.store.delete(index)
        else:
            self.store.put(index, ids)
        if self._timeline is not None and index <= self._timeline.cursor:
            self._timeline = None  # the tracker's memory no longer matches the stored masks
            self._memory_live = False

    def _idle(self) -> None:
        """Changes wait for a running propagation to end: they would change what it tracks from."""
        if self._running and not self._in_keyframe:
            raise InputError("a propagation is running on this session; cancel() it or let it finish first")

    # ----------------------------------------------------------------- objects and prompts
    def add_object(self, frame_index: int, *, points: list | None = None, labels: list | None = None,
                   box: tuple | None = None, stroke: list | None = None, mask: np.ndarray | None = None,
                   label: str | None = None, obj_id: int | None = None) -> int:
        """Add an object on any frame (or, with `obj_id`, replace that object's mask there).

        Exactly one prompt: clicks (`points` with `labels`, 1 positive / 0 negative), a `box`
        (x0, y0, x1, y1), a brush `stroke` (list of (x, y)) or a boolean `mask`. The new mask is painted
        over what the frame holds. Returns the object id. Undoable.
        """
        index = self._check_frame(frame_index)
        prompt = P.make_prompt(index, points=points, labels=labels, box=box, stroke=stroke, mask=mask, label=label)
        return self._add_object(prompt, obj_id)

    def apply(self, prompt: P.Prompt, obj_id: int | None = None) -> list[int]:
        """Apply a typed prompt (see :mod:`samtrack.tracking.prompts`); returns the ids it added or edited."""
        self._check_frame(prompt.frame)
        if isinstance(prompt, P.Text):
            return self.add_objects_from_text(prompt.frame, prompt.caption, dict(prompt.sounds) or None)
        return [self._add_object(prompt, obj_id)]

    def _add_object(self, prompt: P.ObjectPrompt, obj_id: int | None) -> int:
        with self._lock:
            self._idle()
            if obj_id is not None:
                self.registry.check(obj_id)
            else:
                self.registry.check_room()
            index = prompt.frame
            P.check_prompt(prompt, self.source.width, self.source.height)  # before the segmenter loads
            obj_mask = prompt.cut(self.segmenter if not isinstance(prompt, P.MaskPrompt) else None,
                                  self._read(index))
            if not obj_mask.any():
                raise InputError(f"the {prompt.record()['kind']} prompt on frame {index} produced an empty mask")
            with self._record("add object" if obj_id is None else f"edit object {obj_id}", [index]):
                ids = self.mask(index).copy()
                if obj_id is None:
                    obj_id = self.registry.add(prompt.label, index, prompt.record())
                else:
                    ids[ids == obj_id] = 0
                    if prompt.label:
                        self.registry.relabel(obj_id, prompt.label)
                ids[obj_mask] = obj_id
                self._set_mask(index, ids)
            return obj_id

    def segment_everything(self, frame_index: int) -> list[int]:
        """Segment everything on a frame; segments not already covered become new objects. Undoable."""
        index = self._check_frame(frame_index)
        with self._lock:
            self._idle()
            segments = self.segmenter.everything(self._read(index), **self.settings.everything_args())
            return self._add_segments(index, segments, None, "segment everything")

    def add_objects_from_text(self, frame_index: int, caption: str,
                              sounds: dict[str, float] | None = None) -> list[int]:
        """Detect what `caption` names on a frame ("swan. water") and add every instance not yet
        tracked there as a new object labelled with its phrase. Undoable. Returns the new ids.
        `sounds` (label -> probability) records that the caption was heard in the soundtrack."""
        index = self._check_frame(frame_index)
        with self._lock:
            self._idle()
            segments, info = text_segments(self._read(index), index, caption, self.detector, self.segmenter,
                                           self.settings, sounds)
            return self._add_segments(index, segments, info, f"text {caption!r}")

    def _add_segments(self, index: int, segments: np.ndarray, info: dict | None, name: str) -> list[int]:
        with self._record(name, [index]):
            ids = self.mask(index).copy()
            added = self.registry.add_segments(ids, segments, index, min_new_obj_iou=self.settings.min_new_obj_iou,
                                               min_area=self.settings.min_area, info=info)
            self._set_mask(index, ids)
        return added

    def remove_object(self, obj_id: int) -> None:
        """Remove an object from the registry and from every frame. Undoable."""
        with self._lock:
            self._idle()
            self.registry.check(obj_id)
            self.store.flush()
            frames = [i for i in range(len(self.source))
                      if self.store.has(i) and (self.store.get(i) == obj_id).any()]
            with self._record(f"remove object {obj_id}", frames):
                self.registry.remove(obj_id)
                for i in frames:
                    ids = self.store.get(i).copy()
                    ids[ids == obj_id] = 0
                    self._set_mask(i, ids)

    def relabel(self, obj_id: int, label: str) -> None:
        with self._lock:
            self.registry.check(obj_id)
            with self._record(f"relabel object {obj_id}", []):
                self.registry.relabel(obj_id, label)

    # ----------------------------------------------------------------- audio grounding
    def sounds(self, start: float | None = None, end: float | None = None) -> list[tuple[str, float]]:
        """The AudioSet labels heard in the input's soundtrack (or a time window), most probable first:
        those above ``audio_threshold`` among the top ``label_num`` (only the first with ``audio_top1``)."""
        from samtrack.models.audio import decode_audio

        if not self.source.has_audio:
            raise InputError(f"{self.source.path} has no audio track, so there is no sound to ground")
        waveform, rate = decode_audio(self.source.path, start, end)
        s = self.settings
        heard = self.audio_tagger.tag(waveform, rate, s.label_num, s.audio_threshold)
        return heard[:1] if s.audio_top1 else heard

    def add_objects_from_audio(self, frame_index: int, start: float | None = None,
                               end: float | None = None) -> tuple[str, list[int]]:
        """Ground the sounds heard (see :meth:`sounds`), as one caption, on a frame; returns (caption, new ids)."""
        heard = self.sounds(start, end)
        if not heard:
            raise InputError(f"no sound label in {self.source.path} is above the threshold "
                             f"{self.settings.audio_threshold}")
        caption = P.audio_caption(heard)
        return caption, self.add_objects_from_text(frame_index, caption, dict(heard))

    # ----------------------------------------------------------------- settings
    def update_settings(self, settings: Settings) -> None:
        """Use `settings` from now on, keeping every object and mask. The models a change concerns are
        taken afresh from the pool; a new tracker (or tracker memory setting) starts its memory again at
        the next propagation, from that propagation's start frame."""
        with self._lock:
            self._idle()
            old, new = self.settings.to_dict(), settings.to_dict()
            changed = {k for k, v in new.items() if old.get(k) != v}
            self.settings = settings
            self._run_record.settings = settings.to_dict()
            self.registry.max_obj_num = settings.max_obj_num
            if changed & {"segmenter", "device", "precision"}:
                self._segmenter = None
            if changed & {"tracker", "tracker_checkpoint", "device", "precision", "long_term_mem_gap",
                          "max_len_long_term", "num_memory_frames", "max_conditioning_frames"}:
                self._tracker = None
                self._memory_live = False
            if changed & {"detector", "device"}:
                self._detector = None
            if changed & {"audio_model", "device"}:
                self._audio = None
            self._save_state()

    # ----------------------------------------------------------------- undo / redo
    def _record(self, name: str, frames: list[int]) -> Any:
        return self.history.record(name, frames, self.registry, self.store.get, self._set_mask)

    def undo(self) -> str | None:
        """Revert the last prompt action (add, edit, remove, relabel, segment everything); its name."""
        with self._lock:
            self._idle()
            name = self.history.undo(self.registry, self._set_mask)
            self._save_state()
            return name

    def redo(self) -> str | None:
        with self._lock:
            self._idle()
            name = self.history.redo(self.registry, self._set_mask)
            self._save_state()
            return name

    # ----------------------------------------------------------------- propagation
    def cancel(self) -> None:
        """Stop the running propagation (from any thread) before its next frame: it saves its state
        and raises :class:`Cancelled`. Frames it finished are kept; nothing happens when none runs."""
        if self._running:
            self._cancel.set()

    def _end(self, end: int | None) -> int:
        return len(self.source) - 1 if end is None else self._check_frame(end)

    def iter_propagate(self, start: int, end: int | None = None, direction: str = "forward",
                       discover: bool = False, *, prompts: P.Prompts | None = None, categories: str | None = None,
                       objects: list[int] | None = None) -> Iterator[FrameResult]:
        """Propagate from frame `start` and yield each frame's result as soon as it is made.

        ``direction="forward"`` tracks every object from `start` (its mask is the reference) to `end`
        (default: the last frame). Frames after `start` are overwritten; frames before it stay exactly as
        they are (roll back: correct or add objects on frame t, then propagate from t). If the last forward
        pass stopped at `start` and nothing changed since, it continues with the tracker's memory.
        `prompts` (frame -> prompts) are applied when the pass reaches their frame, which then becomes a
        key frame. With `discover`, every frame that is a multiple of ``sam_gap`` is a key frame too,
        where segment-everything (or the text `categories`, "swan. duck") adds the objects not yet tracked.

        ``direction="backward"`` carries `objects` (default: those added on `start`) from `start` back to
        `end` (default 0); earlier frames keep every pixel they hold and gain the carried objects only
        where they hold background.

        Errors in the arguments are raised here; tracking starts with the first ``next()``.
        """
        if direction == "backward":
            return self._iter_backward(start, 0 if end is None else end, objects)
        if direction != "forward":
            raise InputError(f"direction must be 'forward' or 'backward', not {direction!r}")
        start, end = self._check_frame(start), self._end(end)
        if end < start:
            raise InputError(f"end frame {end} is before start frame {start}; propagate backward instead")
        prompts = {f: items for f, items in (prompts or {}).items() if items}
        P.check_prompts(prompts, frames=len(self.source), width=self.source.width, height=self.source.height,
                        end=end, max_obj_num=self.settings.max_obj_num, existing=len(self.registry))
        if min(prompts, default=start) < start:
            raise InputError(f"prompts on frame {min(prompts)} come before the start frame {start}")
        tl = self._timeline
        if (tl is not None and tl.mode == "forward" and tl.cursor == start and self._memory_live
                and start not in prompts and (tl.discover, tl.categories) == (discover, categories)):
            self._run_record.end = end
            return self._run(start + 1, end, prompts)
        if start not in prompts and not discover:
            ref = self.store.get(start)
            if ref is None or not ref.any():
                raise InputError(f"frame {start} has no objects to propagate; add one there first")
        self._timeline = Timeline("forward", start, start - 1, [], discover, categories)
        self._run_record.prompts, self._run_record.end = prompt_records(prompts), end
        return self._run(start, end, prompts)

    def iter_auto(self, end: int | None = None, *, categories: str | None = None,
                  sounds: list[tuple[str, float]] | None = None) -> Iterator[FrameResult]:
        """SAM-Track's automatic mode, streamed: segment everything on frame 0 and every `sam_gap`
        frames, add the segments not yet tracked as new objects (fresh ids), track everything between.

        With `categories` ("swan. duck"), key frames detect those categories with Grounding DINO
        instead of segmenting everything (SAM-Track's demo_instseg), and new objects get their label;
        a key frame after the first whose new objects would cover more than 40% of it adds none (SAM-Track's
        guard). `sounds`: the soundtrack's (label, probability) pairs the categories were made from
        (:meth:`sounds`), recorded with every object. On a resumed session the pass continues where it stopped.
        """
        tl = self._timeline
        if tl is not None and tl.mode == "auto":
            if categories and categories != tl.categories:
                raise InputError(f"this run detects {tl.categories or 'everything'}; it cannot switch to {categories!r}")
            end = self._resume_end(None, end)
            return _nothing() if self._reached(end) else self._run(None, end, {})
        end = self._end(end)
        if len(self.registry) or self.store.has(0):
            raise InputError("automatic mode starts from an empty run; this run already holds objects")
        self._timeline = Timeline("auto", 0, -1, [], True, categories, dict(sounds) if sounds else None)
        self._run_record.prompts, self._run_record.end = {}, end
        return self._run(0, end, {})

    def _keyframe(self, i: int, tracked: np.ndarray | None, prompts: P.Prompts) -> np.ndarray:
        """The reference mask of a key frame: the tracked mask (the stored one on the start frame) with
        the frame's prompts painted over it, then new objects discovered on it."""
        tl = self._timeline
        assert tl is not None
        if tracked is not None and i in prompts:
            self.store.put(i, tracked)  # prompts paint over the tracked mask
        self._in_keyframe = True
        try:
            for prompt in prompts.get(i, ()):
                self.apply(prompt)
        finally:
            self._in_keyframe = False
        ids = self.mask(i) if tracked is None or i in prompts else tracked
        if tl.discover and i % self.settings.sam_gap == 0:
            ids = ids.copy()
            t = time.perf_counter()
            frame = self._read(i)
            if tl.categories:
                segments, info = text_segments(frame, i, tl.categories, self.detector, self.segmenter, self.settings,
                                               tl.sounds)
                self._add_time("detect", time.perf_counter() - t)
            else:
                segments, info = self.segmenter.everything(frame, **self.settings.everything_args()), None
                self._add_time("segment_everything", time.perf_counter() - t)
            t = time.perf_counter()
            guard = MAX_NEW_SHARE if tl.categories and i != tl.start else None
            self.registry.add_segments(ids, segments, i, min_new_obj_iou=self.settings.min_new_obj_iou,
                                       min_area=self.settings.min_area, info=info, max_new_share=guard)
            self._add_time("merge_new_objects", time.perf_counter() - t)
        tl.keyframes.append(i)
        return ids

    def _run(self, first: int | None, end: int, prompts: P.Prompts) -> Iterator[FrameResult]:
        """The forward pass of the timeline from `first` (None: after its cursor, replaying the stored
        masks into the tracker when its memory is not live) to `end`."""
        self._cancel.clear()
        tl = self._timeline
        assert tl is not None
        with self._lock:
            self._begin(tl.start if first is None else first, end)
            try:
                if first is None:
                    first = (tl.cursor if self._memory_live else self._replay()) + 1
            except BaseException:
                self._finish("idle")
                raise
        gap = self.settings.sam_gap

        class Keys:  # the pass's key frames, decided as it goes
            def __contains__(self, i: object) -> bool:
                return isinstance(i, int) and tl.is_key(i, gap, prompts)

        inner = propagate(self.tracker, decoded(self._read, range(first, end + 1)), start=tl.start,
                          reference=lambda i, tracked: self._keyframe(i, tracked, prompts), keyframes=Keys(),
                          cancelled=self._cancel.is_set)
        yield from self._drive(inner, lambda i, ids: self._forward_step(tl, i, ids), tl.start, end)

    def _forward_step(self, tl: Timeline, i: int, ids: np.ndarray) -> np.ndarray:
        self.store.put(i, ids)
        tl.cursor = i
        self._memory_live = True
        if tl.keyframes and tl.keyframes[-1] == i:
            self._save_state()  # objects found here must be on record before later frames
        return ids

    def _iter_backward(self, start: int, end: int, objects: list[int] | None) -> Iterator[FrameResult]:
        start, end = self._check_frame(start), self._check_frame(end)
        if end >= start:
            raise InputError(f"backward propagation needs end < start, got start {start}, end {end}")
        chosen = objects if objects is not None else [o.id for o in self.registry.objects.values() if o.frame == start]
        unknown = [o for o in chosen if o not in self.registry]
        if unknown:
            raise InputError(f"unknown object ids {unknown}")
        ref = self.mask(start)
        ref = np.where(np.isin(ref, chosen), ref, 0).astype(np.uint8)
        if not ref.any():
            raise InputError(f"none of the objects {chosen or '(none given)'} is on frame {start}")
        self._timeline = None
        self._memory_live = False
        return self._backward(start, end, ref, chosen)

    def _backward(self, start: int, end: int, ref: np.ndarray, chosen: list[int]) -> Iterator[FrameResult]:
        self._cancel.clear()
        with self._lock:
            self._begin(start - 1, end)

        def carried_only(i: int, carried: np.ndarray) -> np.ndarray:
            # Only the carried objects: the tracker sees no others, but ids below them are open slots.
            return np.where(np.isin(carried, chosen), carried, 0).astype(np.uint8)

        def step(i: int, carried: np.ndarray) -> np.ndarray | None:
            if i == start:
                return None
            ids = self.mask(i).copy()
            np.copyto(ids, carried, where=(ids == 0) & (carried > 0))
            self.store.put(i, ids)
            return ids

        inner = propagate(self.tracker, decoded(self._read, range(start, end - 1, -1)), start=start,
                          reference=lambda i, _: ref, memorise=carried_only, cancelled=self._cancel.is_set)
        yield from self._drive(inner, step, start - 1, end)

    def _begin(self, origin: int, end: int) -> None:
        if self._running:
            raise InputError("a propagation is already running on this session")
        self._running = True
        self._status = Status("running", None, 0, abs(end - origin) + 1)

    def _finish(self, state: str) -> None:
        self._running = False
        self._in_keyframe = False  # a running pass applies a key frame's prompts itself
        self._status = Status(state, self._status.frame, self._status.done, self._status.total)

    def _drive(self, inner: Iterator[tuple[int, np.ndarray]], step: Callable[[int, np.ndarray], np.ndarray | None],
               origin: int, end: int) -> Iterator[FrameResult]:
        """Run the loop one frame at a time under the session lock, store each result, keep the state
        on disk when it stops (finished, cancelled, failed or abandoned by the consumer)."""
        t0 = time.perf_counter()
        state = "idle"
        failed = False
        try:
            while True:
                with self._lock:
                    try:
                        i, ids = next(inner)
                    except StopIteration:
                        break
                    except Cancelled:
                        state = "cancelled"
                        raise
                    except BaseException:
                        self._memory_live = False  # the tracker may have stopped half way through a frame
                        raise
                    ids = step(i, ids)
                    if ids is None:
                        continue
                    self._status = Status("running", i, abs(i - origin) + 1, abs(end - origin) + 1)
                yield FrameResult.of(i, ids)
        except OutputError as exc:
            failed, self._memory_live = True, False
            if exc.errno not in DISK_FULL:
                raise
            lo, hi = min(origin, end), max(origin, end)
            saved = [i for i in range(lo, hi + 1) if self.run.is_done(i)]
            done = f"{_span(saved)} of {lo}-{hi} are saved" if saved else f"no frame of {lo}-{hi} is saved"
            raise OutputError(f"{exc}; {done} in {self.out_dir}: once there is space, run the same command "
                              "with --resume (resume=True)", exc.errno) from exc
        finally:
            with self._lock:
                inner.close()
                self._add_time("track", time.perf_counter() - t0)
                self._cancel.clear()
                if self._status.state == "closed":  # closed under a running pass: close() saved everything
                    self._running = False
                else:
                    try:
                        self._checkpoint()
                    except OutputError:
                        if not failed:
                            raise
                        with suppress(OutputError):
                            self._save_state()  # where the pass got to, if the disk still takes that much
                    finally:
                        self._finish(state)

    def _replay(self) -> int:
        """Rebuild the tracker's memory of an interrupted forward pass from the stored masks.

        Replays the calls of the original pass (reference, key frames tracked then re-referenced, memory
        updates), fed with the masks it wrote, so the memory, and every mask after it, is identical to
        an uninterrupted run. Objects its key frames found after the last stored frame are dropped (they
        are found again). Returns the last frame replayed (start - 1 when nothing was stored).
        """
        tl = self._timeline
        assert tl is not None
        last = tl.cursor
        while last >= tl.start and not self.store.has(last):
            last -= 1
        self.registry.forget_after(last, set(tl.keyframes))
        tl.keyframes = [k for k in tl.keyframes if k <= last]
        tl.cursor = last
        if last >= tl.start:
            for _ in propagate(self.tracker, decoded(self._read, range(tl.start, last + 1)), start=tl.start,
                               reference=self._stored, keyframes=set(tl.keyframes), memorise=self._stored,
                               cancelled=self._cancel.is_set):
                pass
            self._memory_live = True
        return last

    def _stored(self, index: int, _: np.ndarray | None) -> np.ndarray:
        return self.store.get(index)

    # ----------------------------------------------------------------- blocking wrappers
    def _drain(self, results: Iterator[FrameResult], progress: Progress | None) -> None:
        with closing(results):  # type: ignore[type-var]
            for r in results:
                if progress:
                    st = self._status
                    progress(st.done, st.total, {"frame": r.index, "objects": len(self.registry)})

    def propagate(self, start: int, end: int | None = None, *, discover: bool = False,
                  progress: Progress | None = None) -> None:
        """:meth:`iter_propagate` forward, to the end."""
        self._drain(self.iter_propagate(start, end, discover=discover), progress)

    def propagate_backward(self, start: int, end: int = 0, *, objects: list[int] | None = None,
                           progress: Progress | None = None) -> None:
        """:meth:`iter_propagate` backward, to the end."""
        self._drain(self.iter_propagate(start, end, "backward", objects=objects), progress)

    def track_prompts(self, prompts: P.Prompts, end: int | None = None, *, discover: bool = False,
                      categories: str | None = None, progress: Progress | None = None) -> None:
        """Apply prompts on several frames and track, in one forward pass from the first prompt frame
        (SAM-Track's key frames): on each prompt frame after the first, the tracked mask is computed, the
        prompts are painted onto it and the result becomes a new reference, keeping the memory of the
        frames before. With `discover`, segment-everything (or `categories`) adds new objects every
        `sam_gap` frames as well."""
        if not any(prompts.values()):
            raise InputError("no prompts given")
        start = min(f for f, items in prompts.items() if items)
        self._drain(self.iter_propagate(start, end, discover=discover, prompts=prompts, categories=categories),
                    progress)

    def run_auto(self, end: int | None = None, *, categories: str | None = None,
                 sounds: list[tuple[str, float]] | None = None, progress: Progress | None = None) -> None:
        """:meth:`iter_auto`, to the end."""
        self._drain(self.iter_auto(end, categories=categories, sounds=sounds), progress)

    def resume(self, prompts: P.Prompts | None = None, *, end: int | None = None,
               progress: Progress | None = None) -> bool:
        """Continue the forward pass that was interrupted, up to its last frame; False when there is no
        pass to continue. A pass that had reached its last frame is left as it is.

        For a pass made by `track_prompts`, give the same `prompts`: those on frames the pass had not
        reached yet are applied when it gets there. `end` None keeps the run's last frame. Other prompts
        or another `end` are refused unless the session allows changes (and never on frames already
        tracked), saying what differs.
        """
        tl = self._timeline
        if tl is None:
            return False
        end = self._resume_end(prompts, end)
        if self._reached(end):
            return True
        if tl.mode == "auto":
            self.run_auto(end, progress=progress)
            return True
        last = self._replay()
        if last < tl.start:
            return False
        later = {f: items for f, items in (prompts or {}).items() if f > last}
        self._drain(self._run(last + 1, end, later), progress)
        return True

    def _reached(self, end: int) -> bool:
        """Whether the pass has tracked and stored every frame up to `end`."""
        tl = self._timeline
        return tl is not None and tl.cursor >= end and self.store.has(end)

    def _resume_end(self, prompts: P.Prompts | None, end: int | None) -> int:
        """The last frame a resumed pass tracks to; refuses prompts or an end that differ from the
        run's, unless changes are allowed and they concern frames not tracked yet."""
        tl = self._timeline
        assert tl is not None
        recorded, last = self._run_record, len(self.source) - 1
        new = RunRecord(recorded.input, recorded.settings,
                        recorded.prompts if prompts is None else prompt_records(prompts),
                        recorded.end if end is None else self._check_frame(end))
        allowed, impossible = new.prompt_changes(recorded, tl.cursor)
        more, never = new.end_changes(recorded, last, tl.cursor)
        if impossible or never:
            raise InputError(f"cannot resume {self.out_dir}: {'; '.join(impossible + never)}; a resume cannot "
                             "change what is tracked already: start a new run in another output directory")
        if (allowed or more) and not self.allow_changes:
            raise InputError(f"cannot resume {self.out_dir}: {'; '.join(allowed + more)}; give the prompts and "
                             "end frame it was made with, or pass allow_changes=True (--allow-changes) to "
                             "continue with the new ones")
        unreached = [f for f in recorded.prompts if int(f) > tl.cursor]
        if prompts is None and unreached:
            raise InputError(f"cannot resume {self.out_dir} without its prompts: frames {', '.join(unreached)} "
                             "have prompts it has not reached yet; give the same prompts again")
        self._run_record = new
        return last if new.end is None else new.end

    # ----------------------------------------------------------------- state, outputs
    def _add_time(self, stage: str, seconds: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds

    def _checkpoint(self) -> None:
        self.store.flush()
        self._save_state()

    def _holds_anything(self) -> bool:
        """Whether this run has anything to keep (else closing it leaves no run directory behind)."""
        return self._had_state or self.store.writes > 0 or len(self.registry) > 0

    @property
    def finalized(self) -> bool:
        """Whether the outputs of :meth:`finalize` are written and no mask changed since."""
        return self._finalized_at == self.store.writes

    def _save_state(self) -> None:
        if not self._holds_anything():
            return
        state = {
            "version": 1,
            "source": str(self.source.path),
            "frames": len(self.source),
            "settings": self.settings.to_dict(),
            **self.registry.to_dict(),
            "timeline": None if self._timeline is None else self._timeline.to_dict(),
            "run": self._run_record.to_dict(),
            "finalized": self.finalized,
        }
        with atomic_path(self.out_dir / SESSION_FILE) as tmp:
            tmp.write_text(json.dumps(state, indent=1))

    def _load_state(self, state: dict) -> None:
        path = self.out_dir / SESSION_FILE
        try:
            self.registry.load_dict(state)
            timeline = Timeline.from_dict(state.get("timeline"))
        except (ValueError, KeyError, TypeError, InputError) as exc:
            raise InputError(f"{path} is not a samtrack session file ({exc}); move the directory aside and "
                             "start a new run") from exc
        self.registry.max_obj_num = self.settings.max_obj_num
        self._timeline = timeline
        if state.get("finalized"):
            self._finalized_at = self.store.writes

    def covered(self) -> list[int]:
        """The frames that hold a mask: what the run covers, and what :meth:`finalize` writes."""
        self.store.flush()
        return [i for i in range(len(self.source)) if self.store.path(i).is_file()]

    def precision_used(self) -> dict[str, str]:
        """The precision each model loaded so far runs in (what ``auto`` became on this machine)."""
        used = {kind: getattr(model, "precision", None)
                for kind, model in (("segmenter", self._segmenter), ("tracker", self._tracker))}
        return {kind: p for kind, p in used.items() if p is not None}

    def finalize(self, *, video: bool = True, gif: bool = True, timings: dict | None = None,
                 progress: bool = True) -> dict[str, Path]:
        """Write the overlay video/GIF, masks.zip, masks_rle.json, objects.json and run.json.

        They hold the frames the run covers (those with a mask; frames never tracked get none, and
        run.json lists the covered ranges). Outputs of an earlier finalize that are not written again
        (e.g. with `video` False) are removed, so every output matches the masks.
        """
        with self._lock:
            self._idle()
            covered = self.covered()
            if not covered:
                raise InputError(f"{self.out_dir} has no masks yet: add objects and track before writing outputs")
            self._checkpoint()
            remove_outputs(self.out_dir)
            s = self.settings
            models = {"segmenter": s.segmenter, "tracker": s.tracker, "tracker_checkpoint": s.tracker_checkpoint,
                      "device": s.device, "precision": self.precision_used()}
            try:
                outputs = self.run.finalize(self.registry.summary(), s.to_dict(), models,
                                            {**self.timings, **(timings or {})}, video=video, gif=gif,
                                            frames=covered, progress=progress)
            except OutputError as exc:
                if exc.errno not in DISK_FULL:
                    raise
                raise OutputError(f"{exc}; the masks of {_span(covered)} are saved in {self.run.masks_dir}: once "
                                  "there is space, run the same command with --resume (resume=True) to write the "
                                  "outputs", exc.errno) from exc
            self._finalized_at = self.store.writes
            self._save_state()
            return outputs

    def close(self) -> None:
        """Save the state, finish writing masks, close the frame source and release the run directory.
        Idempotent. A session that wrote nothing leaves no run directory behind. A propagation running in
        another thread is cancelled first: it raises :class:`Cancelled` at its next frame."""
        if self._status.state == "closed":
            return
        self.cancel()
        with self._lock:
            try:
                self._checkpoint()
                self.store.close()
            finally:
                self.source.close()
                if self._holds_anything():
                    self._dir_lock.release()
                else:
                    discard_if_empty(self._dir_lock)
                self._status = Status("closed", self._status.frame, self._status.done, self._status.total)


def _nothing() -> Iterator[FrameResult]:
    """The results of a pass that has nothing left to track (a generator, so it can be closed)."""
    yield from ()


def _span(frames: list[int]) -> str:
    """'frames 0-7' for consecutive frames, else 'frames 0-3, 9-12'."""
    return "frames " + ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in frame_ranges(frames))
