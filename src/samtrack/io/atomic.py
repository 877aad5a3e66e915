"""Atomic file writes: write under a temporary name in the same folder, then rename.

A reader (or a resumed run) therefore sees either the old file, the complete new file, or
nothing, never a half-written one. Temporary names start with a dot and end in `.tmp`, so
globs such as `*.png` never pick them up, and `remove_stale_temps` can clean them after a crash.
The operating system's reasons a write fails (disk full, read-only, no permission) become one
`OutputError` naming the file (`writing`).
"""

from __future__ import annotations

import errno
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from samtrack.errors import OutputError

TEMP_SUFFIX = ".tmp"
# Temporary names never grow a name past this many bytes or the final name's length, whichever is more:
# the shortest name limit in common use (eCryptfs; ext4, XFS, Btrfs and tmpfs allow 255), so a temporary
# name fits wherever its final name does.
_SHORTEST_NAME_MAX = 143
# What a user can do about each way a write fails.
_WRITE_FAILURES = {
    errno.ENOSPC: "the disk is full (no space left on the device); free some space",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EFBIG: "the file is larger than the file system allows; write to another disk",
    errno.EROFS: "the file system is read-only; choose an output directory on a writable disk",
    errno.EACCES: "permission denied; make the directory writable or choose another output directory",
    errno.EPERM: "the operating system does not permit changes there (an immutable or protected directory, "
                 "e.g. chattr +i); choose another output directory",
    errno.ENAMETOOLONG: "the name is too long for the file system (most allow 255 bytes a name, 4096 a path); "
                        "choose a shorter one",
}
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def write_failure(exc: OSError, path: str | os.PathLike[str]) -> OutputError | None:
    """The `OutputError` for a failed write of `path`, or None when `exc` is not a write failure."""
    reason = _WRITE_FAILURES.get(exc.errno) if isinstance(exc.errno, int) else None
    return None if reason is None else OutputError(f"cannot write {path}: {reason}", exc.errno)


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn the write failures raised inside the block into one `OutputError` naming `path`."""
    try:
        yield
    except OSError as exc:
        error = write_failure(exc, path)
        if error is None:
            raise
        raise error from exc


def temp_path_for(path: Path) -> Path:
    """A unique hidden temporary path beside `path` (unique per process, thread and call).

    Its name starts with `path`'s name, cut short where needed so that it is no longer than that name
    (or than `_SHORTEST_NAME_MAX` bytes): wherever `path` can exist, so can its temporary file.
    """
    tail = f".{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}".encode()
    name = path.name.encode()
    keep = max(len(name), _SHORTEST_NAME_MAX) - 1 - len(tail)
    stem = name[:keep].decode("utf-8", errors="ignore")  # never half a character
    return path.with_name(f".{stem}{tail.decode()}")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed.

    Example:
        with atomic_path(out / "run.json") as tmp:
            tmp.write_text(text)
    """
    final = Path(path)
    with writing(final):
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
    """Delete temporary files left in `folder` by an interrupted run; return how many (a link is removed
    itself, never what it points to; folders are left alone)."""
    removed = 0
    if folder.is_dir():
        for p in folder.glob(f".*{TEMP_SUFFIX}"):
            if p.is_symlink() or not p.is_dir():
                p.unlink(missing_ok=True)
                removed += 1
    return removed
