"""Per-frame id masks of a session, kept on disk as palette PNGs, written off the critical path."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from samtrack.errors import SamtrackError
from samtrack.io.outputs import RunWriter


class MaskStore:
    """The id mask of every frame of a run (`RunWriter`'s masks/<name>.png), readable while written.

    `put` hands the PNG encoding to a background thread, so tracking never waits on compression or
    the disk; until written, the mask is served from memory (at most `max_pending` frames are held,
    so memory stays bounded however long the video). Every file is written atomically, in order, so a
    run interrupted at any point leaves only complete masks behind. Call `flush` before reading the
    files from elsewhere and `close` at the end.
    """

    def __init__(self, run: RunWriter, max_pending: int = 16) -> None:
        self.run = run
        self.directory = run.masks_dir
        self._pending: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[int | None] = queue.Queue(maxsize=max_pending)
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._write_loop, name="samtrack-mask-writer", daemon=True)
        self._thread.start()

    def path(self, index: int) -> Path:
        return self.run.mask_path(index)

    def put(self, index: int, ids: np.ndarray) -> None:
        """Store frame `index`'s mask (uint8 H×W); the file appears shortly after."""
        self._raise_if_failed()
        ids = np.ascontiguousarray(ids, dtype=np.uint8)
        with self._lock:
            self._pending[index] = ids
        self._queue.put(index)  # blocks when the writer is max_pending frames behind

    def get(self, index: int) -> np.ndarray | None:
        """Frame `index`'s mask, or None when the frame has none yet."""
        with self._lock:
            ids = self._pending.get(index)
        if ids is not None:
            return ids
        return self.run.read_mask(index) if self.path(index).is_file() else None

    def has(self, index: int) -> bool:
        """Whether frame `index` has a mask (pending, or a complete file on disk)."""
        with self._lock:
            if index in self._pending:
                return True
        return self.run.is_done(index)

    def delete(self, index: int) -> None:
        self.flush()
        self.path(index).unlink(missing_ok=True)

    def flush(self) -> None:
        """Wait until every mask handed to `put` is on disk."""
        self._queue.join()
        self._raise_if_failed()

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join()

    def _write_loop(self) -> None:
        while (index := self._queue.get()) is not None:
            try:
                with self._lock:
                    ids = self._pending.get(index)
                if ids is not None and self._error is None:
                    self.run.write_mask(index, ids)
                    with self._lock:
                        if self._pending.get(index) is ids:  # not replaced meanwhile
                            del self._pending[index]
            except Exception as exc:  # noqa: BLE001 - surfaced to the caller on the next put/flush
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            err = self._error
            raise SamtrackError(f"writing masks to {self.directory} failed: {err}") from err
