"""THE propagation loop, shared by every way of tracking, and the pass controller of a session.

:func:`propagate` drives a :class:`~samtrack.models.tracker.Tracker` over frames in any order
(forward, backward, a replay that rebuilds a tracker's memory, an evaluation run), one frame at a
time, and yields each frame's id mask as soon as it is made:

- on the ``start`` frame the tracker is reset and referenced with ``reference(i, None)``;
- on a key frame the frame is tracked, ``reference(i, tracked)`` gives the corrected mask (new
  objects, prompts) and that becomes a new reference;
- on any other frame the frame is tracked, ``memorise(i, tracked)`` gives the mask written into
  memory (by default the tracked one).

:class:`Passes` runs the passes of one session on that loop, one at a time: the :class:`Timeline` of the
forward pass the tracker's memory holds, whether that memory is live, the status, cancellation, storing
each frame under the session's lock, and the replay that rebuilds an interrupted pass's memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from samtrack.errors import InputError, OutputError
from samtrack.io.atomic import DISK_FULL
from samtrack.io.outputs import frame_span
from samtrack.models.tracker import Tracker

if TYPE_CHECKING:
    from samtrack.tracking.store import MaskStore

Reference = Callable[[int, "np.ndarray | None"], np.ndarray]
Memorise = Callable[[int, np.ndarray], np.ndarray]


class Cancelled(Exception):
    """A propagation was cancelled (``Session.cancel()``); every frame it finished is kept."""


@dataclass(frozen=True)
class FrameResult:
    """One propagated frame: its index, its id mask (uint8 H×W) and the object ids present on it."""

    index: int
    ids: np.ndarray
    objects: tuple[int, ...]

    @classmethod
    def of(cls, index: int, ids: np.ndarray) -> FrameResult:
        present = np.flatnonzero(np.bincount(ids.ravel(), minlength=256)[1:]) + 1
        return cls(index, ids, tuple(int(i) for i in present))


@dataclass
class Timeline:
    """What the tracker's memory holds: a forward pass begun at `start` (tracker reset there), done up
    to `cursor`, with the key frames it re-referenced so far. Enough to replay the pass exactly (from
    the stored masks) and continue it after an interruption.

    `mode` is ``auto`` for SAM-Track's automatic mode, ``concept`` for a tracker that detects the
    `categories` and tracks them by itself on every frame (SAM 3), ``forward`` otherwise; `discover` and
    `categories` say how key frames find new objects (segment everything, or these text categories,
    heard as `sounds` when they come from the soundtrack).
    """

    mode: str
    start: int
    cursor: int
    keyframes: list[int] = field(default_factory=list)
    discover: bool = False
    categories: str | None = None
    sounds: dict[str, float] | None = None  # the soundtrack's labels the categories come from
    dropped: int = 0  # objects a concept pass found beyond max_obj_num (they get no id)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Timeline | None:
        if not data:
            return None
        return cls(data["mode"], int(data["start"]), int(data["cursor"]), list(data.get("keyframes", [])),
                   bool(data.get("discover", data["mode"] == "auto")), data.get("categories"), data.get("sounds"),
                   int(data.get("dropped", 0)))

    def is_key(self, index: int, gap: int, prompt_frames: Container[int]) -> bool:
        """Whether the pass re-references on this frame: a prompt frame, or a discovery frame."""
        return index in prompt_frames or (self.discover and index % gap == 0)


def decoded(read: Callable[[int], np.ndarray], indices: Iterable[int],
            ahead: int = 4) -> Iterator[tuple[int, np.ndarray]]:
    """(index, read(index)) for `indices`, decoded in a background thread up to `ahead` frames early."""
    q: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def produce() -> None:
        try:
            for i in indices:
                if stop.is_set():
                    return
                q.put((i, read(i)))
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


def propagate(tracker: Tracker, frames: Iterable[tuple[int, np.ndarray]], *, start: int | None,
              reference: Reference, keyframes: Container[int] = (), memorise: Memorise | None = None,
              cancelled: Callable[[], bool] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Track `frames` ((index, frame) pairs, in the order to feed them) and yield (index, id mask).

    `start`: the frame where the tracker is reset and first referenced (None: continue the memory it
    has). `cancelled` is asked before each frame; when it returns True, :class:`Cancelled` is raised
    before that frame is touched.
    """
    for i, frame in frames:
        if cancelled is not None and cancelled():
            raise Cancelled(f"cancelled before frame {i}")
        if i == start:
            tracker.reset()
            ids = reference(i, None)
            tracker.add_reference(frame, ids)
        elif i in keyframes:
            ids = reference(i, tracker.track(frame))
            tracker.add_reference(frame, ids)
        else:
            tracked = tracker.track(frame)
            ids = tracked if memorise is None else memorise(i, tracked)
            tracker.update_memory(ids)
        yield i, ids


@dataclass(frozen=True)
class Status:
    """Where a session stands: ``idle``, ``running`` (a propagation), ``cancelled`` or ``closed``;
    the last frame propagated, and frames done / total of the current (or last) propagation."""

    state: str
    frame: int | None = None
    done: int = 0
    total: int = 0


Step = Callable[[int, Any], "np.ndarray | None"]  # store one frame's result (None: nothing to yield)


class Passes:
    """The pass controller of one session: at most one pass at a time, driven frame by frame under the
    session's `lock` so prompts never interleave with a half-made frame.

    It keeps the :class:`Timeline` of the forward pass the tracker's memory holds and whether that
    memory is live (it is not after a restart, a backward pass or another tracker), the status, and
    cancellation. Each frame's result goes to the mask `store`; when a pass stops (finished,
    cancelled, failed or abandoned by its consumer) `save()` keeps the state on disk and the session
    is idle again, whatever happened, with every finished frame kept.

    `tracker()` gives the session's tracker (loaded on first use, before the pass is marked running:
    a tracker that fails to load leaves the session idle); `read(i)` a frame.
    """

    def __init__(self, lock: threading.RLock, store: MaskStore, read: Callable[[int], np.ndarray],
                 tracker: Callable[[], Tracker], save: Callable[[], None], timings: dict[str, float]) -> None:
        self._lock, self._store, self._read = lock, store, read
        self._tracker, self._save, self._timings = tracker, save, timings
        self.timeline: Timeline | None = None
        self.memory_live = False  # the tracker's memory matches the timeline
        self.status = Status("idle")
        self.running = False
        self._cancel = threading.Event()

    @property
    def cursor(self) -> int | None:
        """The last frame of the forward pass the tracker's memory holds (None when there is none)."""
        tl = self.timeline
        return tl.cursor if tl is not None and tl.cursor >= tl.start else None

    def cancel(self) -> None:
        """Stop the running pass (from any thread) before its next frame; nothing happens when none runs."""
        if self.running:
            self._cancel.set()

    def mask_changed(self, index: int) -> None:
        """A stored mask changed outside a pass: the memory no longer matches frames from `index` on."""
        tl = self.timeline
        if tl is not None and index <= tl.cursor:
            self.timeline = None
            self.memory_live = False

    def continues(self, start: int, discover: bool, categories: str | None) -> bool:
        """Whether a forward pass from `start` can go on with the memory the tracker holds."""
        tl = self.timeline
        return (tl is not None and tl.cursor == start and self.memory_live
                and (tl.discover, tl.categories) == (discover, categories))

    def reached(self, end: int) -> bool:
        """Whether the forward pass has tracked and stored every frame up to `end`."""
        tl = self.timeline
        return tl is not None and tl.cursor >= end and self._store.has(end)

    # ------------------------------------------------------------------ the passes
    def forward(self, first: int | None, end: int, keyframe: Reference, keyframes: Container[int],
                truncate: Callable[[int, set[int]], None]) -> Iterator[FrameResult]:
        """The forward pass of the timeline from `first` (None: after its cursor, replaying the stored
        masks into the tracker when its memory is not live) to `end`. On the timeline's start frame and
        the frames in `keyframes`, `keyframe(i, tracked)` gives the reference mask. A replay calls
        `truncate(last, keyframes)` to drop what key frames after the last stored frame had found."""
        tl = self.timeline
        assert tl is not None
        tracker = self._tracker()
        with self._lock:
            self._begin(tl.start if first is None else first, end)
            try:
                if first is None:
                    first = (tl.cursor if self.memory_live else self._replay(tracker, truncate)) + 1
            except BaseException:
                self._finish("idle")
                raise

        def reference(i: int, tracked: np.ndarray | None) -> np.ndarray:
            ids = keyframe(i, tracked)
            tl.keyframes.append(i)
            return ids

        def step(i: int, ids: np.ndarray) -> np.ndarray:
            self._store.put(i, ids)
            tl.cursor = i
            self.memory_live = True
            if tl.keyframes and tl.keyframes[-1] == i:
                self._save()  # objects found here must be on record before later frames
            return ids

        inner = propagate(tracker, decoded(self._read, range(first, end + 1)), start=tl.start, reference=reference,
                          keyframes=keyframes, cancelled=self._cancel.is_set)
        yield from self._drive(inner, step, tl.start, end)

    def backward(self, start: int, end: int, ref: np.ndarray, carried: list[int],
                 finished: Callable[[], None]) -> Iterator[FrameResult]:
        """Carry the objects `carried` of `ref` (frame `start`'s mask) back to frame `end`; earlier frames
        keep every pixel they hold and gain the carried objects only where they hold background.
        The forward timeline stays (its frames after `start` are untouched), its memory does not.
        `finished()` is called when the pass reaches `end`."""
        tracker = self._tracker()
        with self._lock:
            self._begin(start - 1, end)
            self.memory_live = False  # the tracker's memory holds this pass from now on

        def carried_only(i: int, tracked: np.ndarray) -> np.ndarray:
            # Only the carried objects: the tracker sees no others, but ids below them are open slots.
            return np.where(np.isin(tracked, carried), tracked, 0).astype(np.uint8)

        def step(i: int, tracked: np.ndarray) -> np.ndarray | None:
            if i == start:
                return None
            ids = self._store.get(i)
            ids = np.zeros_like(tracked) if ids is None else ids.copy()
            np.copyto(ids, tracked, where=(ids == 0) & (tracked > 0))
            self._store.put(i, ids)
            return ids

        inner = propagate(tracker, decoded(self._read, range(start, end - 1, -1)), start=start,
                          reference=lambda i, _: ref, memorise=carried_only, cancelled=self._cancel.is_set)
        yield from self._drive(inner, step, start - 1, end, finished)

    def concept(self, first: int, end: int, make: Callable[[], Any], step: Step) -> Iterator[FrameResult]:
        """A pass of a tracker that detects and tracks by itself (SAM 3's concept tracking) from frame
        `first` to `end`: frames are pushed in order and `step(i, final)` turns each frame the tracker
        returns as final (``final.objects``: track id, label, score, mask) into the frame's id mask."""
        tracker = make()
        with self._lock:
            self._begin(first, end)
            self.memory_live = False  # its memory is its own: another pass starts afresh

        def finals() -> Iterator[tuple[int, Any]]:
            for i, frame in decoded(self._read, range(first, end + 1)):
                if self._cancel.is_set():
                    raise Cancelled(f"cancelled before frame {i}")
                for final in tracker.push(i, frame):
                    yield final.index, final
            for final in tracker.finish():
                yield final.index, final

        yield from self._drive(finals(), step, first, end)

    def _replay(self, tracker: Tracker, truncate: Callable[[int, set[int]], None]) -> int:
        """Rebuild the tracker's memory of an interrupted forward pass from the stored masks.

        Replays the calls of the original pass (reference, key frames tracked then re-referenced, memory
        updates), fed with the masks it wrote, so the memory, and every mask after it, is identical to
        an uninterrupted run. Returns the last frame replayed (start - 1 when nothing was stored).
        """
        tl = self.timeline
        assert tl is not None
        last = tl.cursor
        while last >= tl.start and not self._store.has(last):
            last -= 1
        truncate(last, set(tl.keyframes))
        tl.keyframes = [k for k in tl.keyframes if k <= last]
        tl.cursor = last
        if last >= tl.start:
            stored = lambda i, _: self._store.get(i)
            for _ in propagate(tracker, decoded(self._read, range(tl.start, last + 1)), start=tl.start,
                               reference=stored, keyframes=set(tl.keyframes), memorise=stored,
                               cancelled=self._cancel.is_set):
                pass
            self.memory_live = True
        return last

    # ------------------------------------------------------------------ one frame at a time
    def _begin(self, origin: int, end: int) -> None:
        if self.running:
            raise InputError("a propagation is already running on this session")
        self._cancel.clear()
        self.running = True
        self.status = Status("running", None, 0, abs(end - origin) + 1)

    def _finish(self, state: str) -> None:
        self.running = False
        self.status = Status(state, self.status.frame, self.status.done, self.status.total)

    def _drive(self, inner: Iterator[tuple[int, np.ndarray]], step: Step, origin: int, end: int,
               finished: Callable[[], None] | None = None) -> Iterator[FrameResult]:
        """Run the loop one frame at a time under the lock, store each result, keep the state on disk
        and leave the session idle when it stops (finished, cancelled, failed or abandoned)."""
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
                        self.memory_live = False  # the tracker may have stopped half way through a frame
                        raise
                    ids = step(i, ids)
                    if ids is None:
                        continue
                    self.status = Status("running", i, abs(i - origin) + 1, abs(end - origin) + 1)
                yield FrameResult.of(i, ids)
            if finished is not None:
                finished()
        except OutputError as exc:
            failed, self.memory_live = True, False
            if exc.errno not in DISK_FULL:
                raise
            raise self._disk_full(exc, origin, end) from exc
        finally:
            with self._lock:
                inner.close()
                self._timings["track"] = self._timings.get("track", 0.0) + time.perf_counter() - t0
                self._cancel.clear()
                if self.status.state == "closed":  # closed under a running pass: close() saved everything
                    self.running = False
                else:
                    try:
                        self._store.flush()
                        self._save()
                    except OutputError as exc:
                        if not failed and exc.errno not in DISK_FULL:
                            raise
                        if not failed:
                            raise self._disk_full(exc, origin, end) from exc
                        with suppress(OutputError):
                            self._save()  # where the pass got to, if the disk still takes that much
                    finally:
                        self._finish(state)

    def _disk_full(self, exc: OutputError, origin: int, end: int) -> OutputError:
        """A full disk, said with what is saved and how to go on."""
        lo, hi = min(origin, end), max(origin, end)
        run = self._store.run
        saved = [i for i in range(lo, hi + 1) if run.is_done(i)]
        done = f"{frame_span(saved)} of {lo}-{hi} are saved" if saved else f"no frame of {lo}-{hi} is saved"
        return OutputError(f"{exc}; {done} in {run.out_dir}: once there is space, run the same command with "
                           "--resume (resume=True)", exc.errno)
