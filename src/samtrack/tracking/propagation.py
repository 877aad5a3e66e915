"""The propagation timeline and THE propagation loop, shared by every way of tracking.

:func:`propagate` drives a :class:`~samtrack.models.propagator.Propagator` over frames in any order
(forward, backward, a replay that rebuilds a tracker's memory, an evaluation run), one frame at a
time, and yields each frame's id mask as soon as it is made:

- on the ``start`` frame the tracker is reset and referenced with ``reference(i, None)``;
- on a key frame the frame is tracked, ``reference(i, tracked)`` gives the corrected mask (new
  objects, prompts) and that becomes a new reference;
- on any other frame the frame is tracked, ``memorise(i, tracked)`` gives the mask written into
  memory (by default the tracked one).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from samtrack.models.propagator import Propagator

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

    `mode` is ``auto`` for SAM-Track's automatic mode, ``forward`` otherwise; `discover` and
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Timeline | None:
        if not data:
            return None
        return cls(data["mode"], int(data["start"]), int(data["cursor"]), list(data.get("keyframes", [])),
                   bool(data.get("discover", data["mode"] == "auto")), data.get("categories"), data.get("sounds"))

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


def propagate(tracker: Propagator, frames: Iterable[tuple[int, np.ndarray]], *, start: int | None,
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
