"""The segment-and-track session: a thin front over the object registry, the undo history, the mask
store and the pass controller, for one video or image sequence.

    pool = ModelPool()                                    # models loaded once, shared by sessions
    with Session("clip.mp4", "runs/clip", models=pool) as s:
        s.propagate(discover=True)                        # SAM-Track's automatic mode
        # or interactively:
        a = s.add_object(0, points=[(420, 240)], labels=[1], label="swan")
        for r in s.iter_propagate(0):                     # streamed: r.index, r.ids, r.objects
            ...
        s.add_object(30, box=(10, 20, 200, 220))          # roll back to frame 30, add an object there
        s.propagate(30)                                   # frames < 30 stay exactly as they were
        s.propagate(30, direction="backward")             # and carry it towards frame 0 as well
        s.finalize()                                      # overlay video/GIF, zip, RLE JSON, records

Masks live on disk in `<out>/masks` (one palette PNG per frame), so memory stays bounded on long
videos; `<out>/session.json` records objects and the tracker's timeline so an interrupted run resumes
with exactly the masks an uninterrupted one would have produced. `cancel()` (from any thread) stops a
running propagation within one frame; it raises :class:`~samtrack.tracking.Cancelled`. Whatever fails
(a model that does not load, a tracker error, a full disk), the session is idle again afterwards with
every finished frame kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from samtrack.errors import InputError, OutputError, PromptError
from samtrack.io.atomic import DISK_FULL
from samtrack.io.outputs import RunWriter, frame_span
from samtrack.io.sources import FrameSource, open_source
from samtrack.models.pool import ModelPool
from samtrack.tracking import prompts as P
from samtrack.tracking.deprecated import DeprecatedSessionMethods
from samtrack.tracking.discovery import MAX_NEW_SHARE, key_frame_segments, nothing_found
from samtrack.tracking.history import History
from samtrack.tracking.modelset import ModelSet
from samtrack.tracking.objects import ObjectRegistry, TrackedObject
from samtrack.tracking.propagation import FrameResult, Passes, Status, Timeline
from samtrack.tracking.runrecord import RunState, prompt_records, remove_outputs
from samtrack.tracking.settings import Settings
from samtrack.tracking.store import MaskStore

if TYPE_CHECKING:
    from typing_extensions import Self

Progress = Callable[[int, int, dict], None]  # (frames done, frames total, info)


class Session(DeprecatedSessionMethods):
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
        self.state = RunState(self.out_dir, self.source, settings, resume=resume, force=force,
                              allow_changes=allow_changes)
        try:
            self.models = ModelSet(models if models is not None else ModelPool(), self.state.settings,
                                   segmenter=segmenter, tracker=tracker, detector=detector, audio=audio_tagger)
            self.registry = ObjectRegistry(self.settings.max_obj_num)
            self.history = History((self.source.height, self.source.width))
            self.timings: dict[str, float] = {}
            self.changed_frames: tuple[int, ...] = ()  # the frames the last undo or redo changed
            self._lock = threading.RLock()  # one step at a time: a prompt, or one frame of a propagation
            self._read_lock = threading.Lock()  # a video decoder serves one thread at a time
            self.run = RunWriter(self.out_dir, self.source, background=True)
            self.store = MaskStore(self.run)
            self.passes = Passes(self._lock, self.store, self._read, lambda: self.models.tracker, self._save,
                                 self.timings)
            self.passes.timeline = self.state.load(self.registry)
            self.registry.max_obj_num = self.settings.max_obj_num
            self._finalized_at = self.store.writes if (self.state.state or {}).get("finalized") else -1
        except BaseException:
            self.state.release(keep=False)
            raise

    # ----------------------------------------------------------------- what a caller reads
    @property
    def settings(self) -> Settings:
        return self.models.settings

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
        return self.passes.status

    @property
    def can_undo(self) -> bool:
        return self.history.can_undo

    @property
    def can_redo(self) -> bool:
        return self.history.can_redo

    @property
    def cursor(self) -> int | None:
        """The last frame of the forward pass the tracker's memory holds (None when there is none)."""
        return self.passes.cursor

    @property
    def resumable(self) -> bool:
        """Whether the run holds a forward pass that ``iter_propagate(None)`` continues (it tracks nothing
        when the pass had reached its last frame)."""
        return self.passes.timeline is not None

    def _check_frame(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or not 0 <= index < len(self):
            raise PromptError(f"frame index {index} is outside the video (frames 0..{len(self) - 1})")
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
        return np.zeros((self.source.height, self.source.width), np.uint8) if ids is None else ids

    # ----------------------------------------------------------------- prompts: guard + record + paint
    def _idle(self) -> None:
        """Changes wait for a running propagation to end: they would change what it tracks from."""
        if self.passes.running:
            raise InputError("a propagation is running on this session; cancel() it or let it finish first")

    def _record(self, name: str, frames: list[int]) -> Any:
        return self.history.record(name, frames, self.registry, self.store.get, self._set_mask)

    def _set_mask(self, index: int, ids: np.ndarray | None) -> None:
        if ids is None:
            self.store.delete(index)
        else:
            self.store.put(index, ids)
        self.passes.mask_changed(index)

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
        return self.apply(prompt, obj_id)[0]

    def apply(self, prompt: P.Prompt, obj_id: int | None = None) -> list[int]:
        """Apply a typed prompt (see :mod:`samtrack.tracking.prompts`); returns the ids it added or edited
        (`obj_id`, or the prompt's own, names an object to give a new mask on this frame). Undoable."""
        index = self._check_frame(prompt.frame)
        obj_id = obj_id if obj_id is not None else getattr(prompt, "obj_id", None)
        with self._lock:
            self._idle()
            if isinstance(prompt, P.Text):
                name = f"text {prompt.caption!r}"
            else:
                if obj_id is not None:
                    self.registry.check(obj_id)
                else:
                    self.registry.check_room()
                P.check_prompt(prompt, self.source.width, self.source.height)
                name = "add object" if obj_id is None else f"edit object {obj_id}"
            with self._record(name, [index]):
                return self._paint(prompt, obj_id)

    def segment_everything(self, frame_index: int) -> list[int]:
        """Segment everything on a frame; segments not already covered become new objects. Undoable."""
        index = self._check_frame(frame_index)
        with self._lock:
            self._idle()
            with self._record("segment everything", [index]):
                return self._discover(index, self.mask(index).copy(), None, None)[1]

    def add_objects_from_text(self, frame_index: int, caption: str,
                              sounds: dict[str, float] | None = None) -> list[int]:
        """Detect what `caption` names on a frame ("swan. water") and add every instance not yet
        tracked there as a new object labelled with its phrase. Undoable. Returns the new ids.
        `sounds` (label -> probability) records that the caption was heard in the soundtrack."""
        text = P.Text(self._check_frame(frame_index), caption, tuple((sounds or {}).items()))
        return self.apply(text)

    def _paint(self, prompt: P.Prompt, obj_id: int | None = None) -> list[int]:
        """Cut a prompt's mask and paint it over its frame: a new object, or `obj_id`'s new mask there.
        Unguarded: the public methods and a pass's key frames call it."""
        index = prompt.frame
        if isinstance(prompt, P.Text):
            return self._discover(index, self.mask(index).copy(), prompt.caption, dict(prompt.sounds) or None)[1]
        obj_id = obj_id if obj_id is not None else prompt.obj_id
        if obj_id is not None:
            self.registry.check(obj_id)
        segmenter = None if isinstance(prompt, P.MaskPrompt) else self.models.segmenter
        obj_mask = prompt.cut(segmenter, self._read(index))
        if not obj_mask.any():
            raise InputError(f"the {prompt.record()['kind']} prompt on frame {index} produced an empty mask")
        ids = self.mask(index).copy()
        if obj_id is None:
            obj_id = self.registry.add(prompt.label, index, prompt.record())
        else:
            ids[ids == obj_id] = 0
            if prompt.label:
                self.registry.relabel(obj_id, prompt.label)
        ids[obj_mask] = obj_id
        self._set_mask(index, ids)
        return [obj_id]

    def _discover(self, index: int, ids: np.ndarray, categories: str | None, sounds: dict[str, float] | None,
                  guard: bool = False) -> tuple[np.ndarray, list[int]]:
        """Add the segments of frame `index` (segment everything, or the instances of `categories`) that
        `ids` does not track yet as new objects; store and return the new mask and the new ids.
        `guard`: SAM-Track's 40% guard (text categories on key frames after the first)."""
        with self._timed("detect" if categories else "segment_everything"):
            segments, info = key_frame_segments(self._read(index), index, self.settings, self.models, categories,
                                                sounds)
        with self._timed("merge_new_objects"):
            added = self.registry.add_segments(ids, segments, index, min_new_obj_iou=self.settings.min_new_obj_iou,
                                               min_area=self.settings.min_area, info=info,
                                               max_new_share=MAX_NEW_SHARE if guard else None)
        if added:
            self._set_mask(index, ids)
        return ids, added

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t

    def remove_object(self, obj_id: int) -> None:
        """Remove an object from the registry and from every frame. Undoable."""
        with self._lock:
            self._idle()
            self.registry.check(obj_id)
            self.store.flush()
            frames = [i for i in range(len(self)) if self.store.has(i) and (self.store.get(i) == obj_id).any()]
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

    def undo(self) -> str | None:
        """Revert the last prompt action (add, edit, remove, relabel, segment everything); its name.
        :attr:`changed_frames` then lists the frames whose masks it changed."""
        return self._history_step(self.history.undo)

    def redo(self) -> str | None:
        """Make the last undone action again; its name (:attr:`changed_frames` as for :meth:`undo`)."""
        return self._history_step(self.history.redo)

    def _history_step(self, step: Callable[..., str | None]) -> str | None:
        with self._lock:
            self._idle()
            changed: list[int] = []

            def put(index: int, ids: np.ndarray | None) -> None:
                changed.append(index)
                self._set_mask(index, ids)

            name = step(self.registry, put)
            self.changed_frames = tuple(changed)
            self._save()
            return name

    # ----------------------------------------------------------------- audio grounding
    def sounds(self, start: float | None = None, end: float | None = None) -> list[tuple[str, float]]:
        """The AudioSet labels heard in the input's soundtrack (or a time window), most probable first:
        those above ``audio_threshold`` among the top ``label_num`` (only the first with ``audio_top1``)."""
        from samtrack.models.audio import decode_audio

        if not self.source.has_audio:
            raise InputError(f"{self.source.path} has no audio track, so there is no sound to ground")
        waveform, rate = decode_audio(self.source.path, start, end)
        a = self.settings.audio
        heard = self.models.audio.tag(waveform, rate, a.label_num, a.audio_threshold)
        return heard[:1] if a.audio_top1 else heard

    def add_objects_from_audio(self, frame_index: int, start: float | None = None,
                               end: float | None = None) -> tuple[str, list[int]]:
        """Ground the sounds heard (see :meth:`sounds`), as one caption, on a frame; returns (caption, new ids)."""
        heard = self.sounds(start, end)
        if not heard:
            raise InputError(f"no sound label in {self.source.path} is above the threshold "
                             f"{self.settings.audio.audio_threshold}")
        caption = P.audio_caption(heard)
        return caption, self.add_objects_from_text(frame_index, caption, dict(heard))

    # ----------------------------------------------------------------- settings
    def update_settings(self, settings: Settings) -> None:
        """Use `settings` from now on (``session.update_settings(session.settings.updated({...}))``),
        keeping every object and mask. The models a change concerns are taken afresh from the pool; a
        new tracker starts its memory again at the next propagation, from that propagation's start frame."""
        with self._lock:
            self._idle()
            if "tracker" in self.models.update(settings):
                self.passes.memory_live = False
            self.state.record.settings = settings.to_dict()
            self.registry.max_obj_num = settings.max_obj_num
            self._save()

    # ----------------------------------------------------------------- propagation
    def cancel(self) -> None:
        """Stop the running propagation (from any thread) before its next frame: it saves its state
        and raises :class:`Cancelled`. Frames it finished are kept; nothing happens when none runs."""
        self.passes.cancel()

    def iter_propagate(self, start: int | None = 0, end: int | None = None, direction: str = "forward",
                       discover: bool = False, *, prompts: P.Prompts | None = None, categories: str | None = None,
                       sounds: dict[str, float] | None = None,
                       objects: list[int] | None = None) -> Iterator[FrameResult]:
        """Propagate from frame `start` and yield each frame's result as soon as it is made. The one way
        to track; :meth:`propagate` runs it to the end.

        ``direction="forward"`` tracks every object from `start` (its mask is the reference) to `end`
        (default: the last frame). Frames after `start` are overwritten; frames before it stay exactly as
        they are (roll back: correct or add objects on frame t, then propagate from t). If the last forward
        pass stopped at `start` and nothing changed since, it continues with the tracker's memory.
        `prompts` (frame -> prompts) are applied when the pass reaches their frame, which then becomes a
        key frame. With `discover`, every frame that is a multiple of ``sam_gap`` is a key frame too,
        where segment-everything (or the text `categories`, "swan. duck", heard as `sounds` when they come
        from the soundtrack) adds the objects not yet tracked. SAM-Track's automatic mode is
        ``discover=True`` from frame 0 of an empty run: new objects join on every key frame.

        `start=None` resumes: the run's forward pass continues from the first frame it had not stored, up
        to its last frame (or `end`), with the memory an uninterrupted pass would have; give the same
        `prompts` (those on frames not reached yet apply when it gets there); other prompts or another
        `end` are refused unless the session allows changes (and never on frames already tracked).
        Nothing is tracked when the pass had reached its end.

        ``direction="backward"`` carries `objects` (default: those added on `start`) from `start` back to
        `end` (default 0); earlier frames keep every pixel they hold and gain the carried objects only
        where they hold background.

        Errors in the arguments are raised here; tracking starts with the first ``next()``.
        """
        with self._lock:
            self._idle()
            if direction == "backward":
                return self._backward(self._check_frame(start), 0 if end is None else self._check_frame(end), objects)
            if direction != "forward":
                raise InputError(f"direction must be 'forward' or 'backward', not {direction!r}")
            if start is None:
                return self._resume(prompts, end)
            return self._forward(self._check_frame(start), len(self) - 1 if end is None else self._check_frame(end),
                                 {f: list(v) for f, v in (prompts or {}).items() if v}, discover, categories, sounds)

    def propagate(self, start: int | None = 0, end: int | None = None, direction: str = "forward",
                  discover: bool = False, *, progress: Progress | None = None, **options: Any) -> None:
        """:meth:`iter_propagate` to the end; `progress(done, total, info)` after every frame."""
        with closing(self.iter_propagate(start, end, direction, discover, **options)) as results:  # type: ignore
            for r in results:
                if progress:
                    st = self.status
                    progress(st.done, st.total, {"frame": r.index, "objects": len(self.registry),
                                                 "direction": direction})

    def _forward(self, start: int, end: int, prompts: P.Prompts, discover: bool, categories: str | None,
                 sounds: dict[str, float] | None) -> Iterator[FrameResult]:
        if end < start:
            raise InputError(f"end frame {end} is before start frame {start}; propagate backward instead")
        P.check_prompts(prompts, frames=len(self), width=self.source.width, height=self.source.height, end=end,
                        max_obj_num=self.settings.max_obj_num, existing=set(self.registry))
        if min(prompts, default=start) < start:
            raise InputError(f"prompts on frame {min(prompts)} come before the start frame {start}")
        record = self.state.record
        if start not in prompts and self.passes.continues(start, discover, categories):
            record.end = end
            return self.passes.forward(start + 1, end, self._keyframe_step(prompts), self._keys(prompts),
                                       self._truncate)
        if start not in prompts and not discover and not self.mask(start).any():
            raise InputError(f"frame {start} has no objects to propagate; add one there first")
        auto = discover and not prompts and not len(self.registry) and not self.store.has(start)
        concept = auto and bool(categories) and self.models.tracks_concepts()
        self.passes.timeline = Timeline("concept" if concept else "auto" if auto else "forward", start, start - 1,
                                        [], discover, categories, sounds)
        record.prompts, record.end = prompt_records(prompts), end
        if concept:
            return self._concept(start, end)
        return self.passes.forward(start, end, self._keyframe_step(prompts), self._keys(prompts), self._truncate)

    def _resume(self, prompts: P.Prompts | None, end: int | None) -> Iterator[FrameResult]:
        tl = self.passes.timeline
        if tl is None:
            raise InputError(f"{self.out_dir} holds no pass to resume; start one with iter_propagate(start)")
        if end is not None:
            self._check_frame(end)
        prompts = {f: list(v) for f, v in (prompts or {}).items() if v} or None
        end = self.state.resume_end(prompts, end, tl.cursor)
        if self.passes.reached(end):
            return (r for r in ())  # nothing to track; a generator, so it can be closed like any pass
        if tl.mode == "concept":
            return self._concept(max(tl.cursor + 1, tl.start), end)
        later = {f: items for f, items in (prompts or {}).items() if f > tl.cursor}
        return self.passes.forward(None, end, self._keyframe_step(later), self._keys(later), self._truncate)

    def _concept(self, first: int, end: int) -> Iterator[FrameResult]:
        """A pass of a tracker that detects the timeline's categories and tracks them by itself on every
        frame (SAM 3): each object it finds gets a fresh id (while max_obj_num allows) labelled with its
        category. A resumed pass gives an object found on its first frame the id of the stored object
        its mask overlaps most on the frame before (IoU >= 0.5). Frames before the first object appears
        are stored with it, so a pass that finds nothing leaves no run behind."""
        tl = self.passes.timeline
        ids_of: dict[int, int | None] = {}  # the tracker's track id -> object id (None: beyond max_obj_num)
        before = self.store.get(first - 1) if first > tl.start else None
        empty: list[int] = []  # frames with no object yet, stored once one appears

        def object_id(obj: Any, i: int) -> int | None:
            if before is not None and i == first:
                for oid in np.unique(before[before > 0]).tolist():
                    theirs = before == oid
                    iou = (theirs & obj.mask).sum() / max((theirs | obj.mask).sum(), 1)
                    if iou >= 0.5 and oid not in ids_of.values():
                        return int(oid)
            if self.registry.next_id > self.settings.max_obj_num:
                tl.dropped += 1
                return None
            return self.registry.add(obj.label, i, {"kind": "concept", "frame": i, "caption": tl.categories,
                                                    "score": round(obj.score, 4)})

        def step(i: int, final: Any) -> np.ndarray:
            ids = np.zeros((self.source.height, self.source.width), np.uint8)
            known = len(ids_of)
            for obj in sorted(final.objects, key=lambda o: o.score):  # the surest object keeps shared pixels
                oid = ids_of[obj.track_id] if obj.track_id in ids_of else ids_of.setdefault(
                    obj.track_id, object_id(obj, i))
                if oid is not None:
                    ids[obj.mask] = oid
            tl.cursor = i
            if not len(self.registry) and before is None:
                empty.append(i)
                return ids
            for j in empty:
                self.store.put(j, np.zeros_like(ids))
            empty.clear()
            self.store.put(i, ids)
            if len(ids_of) > known:
                self._save()  # objects found here must be on record before later frames
            return ids

        return self.passes.concept(first, end, lambda: self.models.concept(tl.categories), step)

    def _keys(self, prompts: P.Prompts) -> Any:
        tl, gap = self.passes.timeline, self.settings.sam_gap

        class Keys:  # the pass's key frames, decided as it goes
            def __contains__(self, i: object) -> bool:
                return isinstance(i, int) and tl.is_key(i, gap, prompts)

        return Keys()

    def _keyframe_step(self, prompts: P.Prompts) -> Callable[[int, np.ndarray | None], np.ndarray]:
        """The reference mask of a key frame: the tracked mask (the stored one on the start frame) with
        the frame's prompts painted over it, then new objects discovered on it."""
        tl = self.passes.timeline

        def keyframe(i: int, tracked: np.ndarray | None) -> np.ndarray:
            if tracked is not None and i in prompts:
                self.store.put(i, tracked)  # prompts paint over the tracked mask
            for prompt in prompts.get(i, ()):
                self._paint(prompt)
            ids = self.mask(i) if tracked is None or i in prompts else tracked
            if tl.discover and (i % self.settings.sam_gap == 0 or (i == tl.start and not prompts)):
                ids = self._discover(i, ids.copy(), tl.categories, tl.sounds,
                                     guard=bool(tl.categories) and i != tl.start)[0]
            elif tracked is None and not ids.any():  # the first frame's prompts found nothing to track
                raise InputError(nothing_found(i, [p.caption for p in prompts.get(i, ()) if isinstance(p, P.Text)],
                                               self.settings))
            return ids

        return keyframe

    def _truncate(self, last: int, keyframes: set[int]) -> None:
        """Objects the key frames after `last` found are dropped: a resumed pass finds them again."""
        self.registry.forget_after(last, keyframes)

    def _backward(self, start: int, end: int, objects: list[int] | None) -> Iterator[FrameResult]:
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
        done = self.state.record.backward
        done.setdefault(str(start), False)

        def finished() -> None:
            done[str(start)] = True

        return self.passes.backward(start, end, ref, chosen, finished)

    # ----------------------------------------------------------------- state and outputs
    def _holds_anything(self) -> bool:
        """Whether this run has anything to keep (else closing it leaves no run directory behind)."""
        return self.state.state is not None or self.store.writes > 0 or len(self.registry) > 0

    @property
    def finalized(self) -> bool:
        """Whether the outputs of :meth:`finalize` are written and no mask changed since."""
        return self._finalized_at == self.store.writes

    def _save(self) -> None:
        if self._holds_anything():
            self.state.save(self.registry, self.passes.timeline, self.finalized)

    def covered(self) -> list[int]:
        """The frames that hold a mask: what the run covers, and what :meth:`finalize` writes."""
        self.store.flush()
        return [i for i in range(len(self)) if self.store.path(i).is_file()]

    def precision_used(self) -> dict[str, str]:
        """The precision each model loaded so far runs in (what ``auto`` became on this machine)."""
        used = {kind: getattr(self.models.loaded(kind), "precision", None)
                for kind in ("segmenter", "tracker", "concept")}
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
            self._save()
            remove_outputs(self.out_dir)
            s = self.settings
            models = {"segmenter": s.segmenter.model, "tracker": s.tracker.model,
                      "tracker_checkpoint": s.tracker.checkpoint, "device": s.device,
                      "precision": self.precision_used()}
            concept = self.models.loaded("concept")
            if concept is not None:  # SAM 3 detected and tracked by itself: what ran
                models.update(tracker_mode="concept", tracker_model_type=concept.model_type)
                if self.models.loaded("segmenter") is None:  # no prompt of the user's needed one
                    models["segmenter"] = None
            try:
                outputs = self.run.finalize(self.registry.summary(), s.to_dict(), models,
                                            {**self.timings, **(timings or {})}, video=video, gif=gif,
                                            frames=covered, progress=progress)
            except OutputError as exc:
                if exc.errno not in DISK_FULL:
                    raise
                raise OutputError(f"{exc}; the masks of {frame_span(covered)} are saved in {self.run.masks_dir}: "
                                  "once there is space, run the same command with --resume (resume=True) to "
                                  "write the outputs", exc.errno) from exc
            self._finalized_at = self.store.writes
            self._save()
            return outputs

    def close(self) -> None:
        """Save the state, finish writing masks, close the frame source and release the run directory.
        Idempotent. A session that wrote nothing leaves no run directory behind. A propagation running in
        another thread is cancelled first: it raises :class:`Cancelled` at its next frame."""
        if self.status.state == "closed":
            return
        self.cancel()
        with self._lock:
            try:
                self.store.flush()
                self._save()
                self.store.close()
            finally:
                self.source.close()
                self.state.release(keep=self._holds_anything())
                st = self.passes.status
                self.passes.status = Status("closed", st.frame, st.done, st.total)
