"""Bounded undo/redo of prompt actions: the masks of the frames an action touched and the object
registry, before and after it (masks zlib-packed: a few KB per frame)."""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from samtrack.tracking.objects import ObjectRegistry

MaskGet = Callable[[int], "np.ndarray | None"]
MaskSet = Callable[[int, "np.ndarray | None"], None]


def pack(ids: np.ndarray | None) -> bytes | None:
    return None if ids is None else zlib.compress(np.ascontiguousarray(ids).tobytes(), 1)


def unpack(packed: bytes | None, shape: tuple[int, int]) -> np.ndarray | None:
    return None if packed is None else np.frombuffer(zlib.decompress(packed), np.uint8).reshape(shape).copy()


@dataclass
class Action:
    """An undoable change: masks of some frames and the object registry, before and after."""

    name: str
    masks: dict[int, tuple[bytes | None, bytes | None]] = field(default_factory=dict)  # frame -> (before, after)
    objects: tuple = ((), ())  # registry snapshots (before, after)


class History:
    """Undo and redo stacks holding at most `limit` actions each (the oldest are forgotten)."""

    def __init__(self, shape: tuple[int, int], limit: int = 100) -> None:
        self.shape = shape
        self._undo: deque[Action] = deque(maxlen=limit)
        self._redo: deque[Action] = deque(maxlen=limit)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        return len(self._undo)

    @contextmanager
    def record(self, name: str, frames: list[int], objects: ObjectRegistry, get: MaskGet,
               put: MaskSet) -> Iterator[None]:
        """Record the change made inside the block as one action; if the block fails, put the masks
        of `frames` and the registry back as they were."""
        before_masks = {i: pack(get(i)) for i in frames}
        before_objects = objects.snapshot()
        try:
            yield
        except BaseException:
            objects.restore(before_objects)
            for i, packed in before_masks.items():
                put(i, unpack(packed, self.shape))
            raise
        masks = {i: (b, pack(get(i))) for i, b in before_masks.items()}
        self._undo.append(Action(name, masks, (before_objects, objects.snapshot())))
        self._redo.clear()

    def undo(self, objects: ObjectRegistry, put: MaskSet) -> str | None:
        """Revert the last action; its name (None when there is nothing to undo)."""
        return self._step(self._undo, self._redo, 0, objects, put)

    def redo(self, objects: ObjectRegistry, put: MaskSet) -> str | None:
        return self._step(self._redo, self._undo, 1, objects, put)

    def _step(self, source: deque[Action], target: deque[Action], side: int, objects: ObjectRegistry,
              put: MaskSet) -> str | None:
        if not source:
            return None
        action = source.pop()
        for i, pair in action.masks.items():
            put(i, unpack(pair[side], self.shape))
        objects.restore(action.objects[side])
        target.append(action)
        return action.name
