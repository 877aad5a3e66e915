"""Atomic file writes: write under a temporary name in the same folder, then rename.

A reader (or a resumed run) therefore sees either the old file, the complete new file, or
nothing, never a half-written one. Temporary names start with a dot and end in `.tmp`, so
globs such as `*.png` never pick them up, and `remove_stale_temps` can clean them after a crash.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_path_for(path: Path) -> Path:
    """A unique hidden temporary path beside `path` (unique per process, thread and call)."""
    tag = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
    return path.with_name(f".{path.name}.{tag}{TEMP_SUFFIX}")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed.

    Example:
        with atomic_path(out / "run.json") as tmp:
            tmp.write_text(text)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a UTF-8 text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files left in `folder` by an interrupted run; return how many."""
    removed = 0
    if folder.is_dir():
        for p in folder.glob(f".*{TEMP_SUFFIX}"):
            p.unlink(missing_ok=True)
            removed += 1
    return removed
