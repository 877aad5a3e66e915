"""Per-frame id masks of a session, kept on disk as palette PNGs, written off the critical path."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from samtrack.io.outputs import RunWriter


class MaskStore:
    """The id mask of every frame of a run (`RunWriter`'s masks/<name>.png), readable while written.

    Writes go through a background `RunWriter`, so tracking never waits on PNG compression or the
    disk; the most recent `keep` masks are also held in memory, so reading back what was just written
    costs nothing, while memory stays bounded however long the video. Every file is written
    atomically and in order, so a run interrupted at any point leaves only complete masks behind.
    """

    def __init__(self, run: RunWriter, keep: int = 32) -> None:
        self.run = run
        self._recent: OrderedDict[int, np.ndarray] = OrderedDict()
        self._keep = keep
        self._unflushed = False
        self.writes = 0  # masks put or deleted so far: whether anything changed since a moment

    def path(self, index: int) -> Path:
        return self.run.mask_path(index)

    def put(self, index: int, ids: np.ndarray) -> None:
        """Store frame `index`'s mask (uint8 H×W); the file appears shortly after."""
        ids = np.ascontiguousarray(ids, dtype=np.uint8)
        self.run.write_mask(index, ids)
        self.writes += 1
        self._unflushed = True
        self._recent[index] = ids
        self._recent.move_to_end(index)
        while len(self._recent) > self._keep:
            self._recent.popitem(last=False)

    def get(self, index: int) -> np.ndarray | None:
        """Frame `index`'s mask, or None when the frame has none yet."""
        ids = self._recent.get(index)
        if ids is not None:
            return ids
        self.flush()
        return self.run.read_mask(index) if self.path(index).is_file() else None

    def has(self, index: int) -> bool:
        """Whether frame `index` has a mask (in memory, or a complete file on disk)."""
        if index in self._recent:
            return True
        self.flush()
        return self.run.is_done(index)

    def delete(self, index: int) -> None:
        self.flush()
        self._recent.pop(index, None)
        self.path(index).unlink(missing_ok=True)
        self.writes += 1

    def flush(self) -> None:
        """Wait until every mask handed to `put` is on disk."""
        if self._unflushed:
            self.run.flush()
            self._unflushed = False

    def close(self) -> None:
        self.run.close()
