"""A run directory's guards: one writer at a time, and a record of the input it was made from.

    lock = RunLock.open("runs/clip")      # creates the folder; refuses it while another run holds it
    ...                                   # write the run
    lock.release()                        # (also on process exit or kill: the OS drops the lock)

    with reading_run("runs/clip"):        # a reader (export): refused while a writer holds the lock, and
        ...                               # a writer that starts meanwhile is refused until it is done

    identity = input_identity(source)     # content digest (SHA-256), path, bytes, frame count, size
    input_differences(recorded, identity) # [] for the same input, else what differs, one line each

The lock is an advisory `flock` on `<out>/.samtrack.lock`, held for as long as the run writes. The
kernel releases it when the holder exits in any way (even `kill -9`), so a lock left by a dead
process is no obstacle: the next run takes it over. The holder writes its pid, host and start time
into the file so a refused run can say who holds it. Locks work between processes and between
sessions of one process; they need a local disk or an NFS mount with locking.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from samtrack.errors import OutputError
from samtrack.io.atomic import TEMP_SUFFIX, write_failure
from samtrack.io.sources import FrameSource, ImageFolderSource

if TYPE_CHECKING:
    from typing_extensions import Self

LOCK_FILE = ".samtrack.lock"
THUMBNAIL_SIDE = 8
# Decoders of different FFmpeg/Pillow builds may differ by a level or two; other content is far off.
THUMBNAIL_TOLERANCE = 6
_DIGEST_CHUNK = 1 << 20


def link_refusal(path: Path) -> OutputError:
    """The error for a link found where samtrack would write (it never writes through one)."""
    try:
        target = f" to {os.readlink(path)}"
    except OSError:
        target = ""
    return OutputError(f"{path} is a link{target}: samtrack writes only inside the output directory and never "
                       "through a link; remove the link, or choose another output directory")


def _existing_file_above(path: Path) -> Path | None:
    """`path` or the first of its parents that exists as something other than a directory."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def create_out_dir(path: str | os.PathLike[str]) -> bool:
    """Create an output directory (and its parents); True when it did not exist before.

    Raises `OutputError` naming the file in the way when the path or a parent is a file, and saying
    what to do when the disk is read-only, full or the folder is protected.
    """
    out = Path(path)
    try:
        blocker = _existing_file_above(out)
        if blocker is not None:
            where = "is" if blocker == out else f"lies under {blocker}, which is"
            raise OutputError(f"the output directory {out} {where} an existing file, not a directory; "
                              "give a directory path (it is created when missing)")
        existed = out.is_dir()
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a name too long, a parent without permission, a full or read-only disk
        raise (write_failure(exc, out) or OutputError(f"cannot create the output directory {out} "
                                                      f"({exc.strerror}); choose another one")) from exc
    return not existed


class RunLock:
    """An exclusive lock on a run directory, held by one writer (process or session) at a time."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_FILE
        self.created = False  # whether `open` created the directory
        self._fd: int | None = None

    @classmethod
    def open(cls, out_dir: str | os.PathLike[str]) -> RunLock:
        """Create `out_dir` if needed and lock it (see `acquire`)."""
        lock = cls(out_dir)
        lock.created = create_out_dir(out_dir)
        lock.acquire()
        return lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock at once, or raise `OutputError` saying which process holds it."""
        if self._fd is not None:
            return
        while True:
            try:  # never through a link: the lock's record would overwrite what it points to
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise link_refusal(self.path) from None
                raise (write_failure(exc, self.path) or OutputError(
                    f"cannot create the lock file {self.path} ({exc.strerror}); choose another output "
                    "directory")) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OutputError(f"cannot lock {self.path} ({exc.strerror}); the file system may not "
                                      "support locks: choose an output directory on a local disk") from exc
                raise OutputError(f"{self.out_dir} is in use by another samtrack run ({holder}); wait for it "
                                  "to finish, or write to another output directory") from None
            # The previous holder may have removed the file between our open and lock: only the file
            # the path names now counts, so lock again if ours is gone.
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
                break
            os.close(fd)
        self._fd = fd
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "command": " ".join(sys.argv)}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError:
            pass  # the record only improves another run's message; the lock itself is held

    def release(self) -> None:
        """Give the lock up and remove the lock file (safe: a waiting run re-checks the file)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only or vanished directory: the OS still drops the lock on close
        os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def reading_run(out_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold a shared lock on a run directory while reading it.

    Raises `OutputError` when a writer holds the directory (a run or render still writing it). While
    the block runs, a writer that tries to start is refused as if another run held the directory;
    other readers are not. A directory whose lock file cannot be created (a read-only disk) is read
    without a lock: no writer can start there either.
    """
    out = Path(out_dir)
    path = out / LOCK_FILE
    while True:
        fd, created = _open_for_reading(path)
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"cannot lock {path} ({exc.strerror}); the file system may not support locks") from exc
            raise OutputError(f"{out} is being written by a samtrack run ({holder}); wait for it to finish, "
                              "then try again") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
            break
        os.close(fd)  # the file was replaced or removed between our open and lock: lock the current one
    if created:  # so that a writer refused meanwhile can say who holds the directory
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "command": " ".join(sys.argv)}
        with suppress(OSError):
            os.pwrite(fd, json.dumps(record).encode(), 0)
    try:
        yield
    finally:
        # Remove the lock file when no one else holds it (as a writer's release does); a writer that
        # opened it meanwhile re-checks the path after locking.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
        except OSError:
            pass  # another reader still holds it, or the directory is read-only: leave the file
        os.close(fd)


def _open_for_reading(path: Path) -> tuple[int | None, bool]:
    """(descriptor of the lock file, whether this call created it); (None, False) where there is no
    lock file and none can be made (a read-only directory)."""
    while True:
        try:
            return os.open(path, os.O_RDWR | os.O_CLOEXEC), False
        except FileNotFoundError:
            pass
        except OSError:
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False  # a lock file we may not write to
            except OSError:
                return None, False
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), True
        except FileExistsError:
            continue  # a writer created it meanwhile: open theirs
        except OSError:
            return None, False


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its process did not record itself"


def contents(out_dir: str | os.PathLike[str]) -> list[str]:
    """The entries of `out_dir` that hold something: not the lock, temporary files or an empty masks/."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    names = []
    for p in sorted(out.iterdir()):
        if p.name == LOCK_FILE or (p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)):
            continue
        if p.is_dir() and not p.is_symlink() and not any(
                not (q.name.startswith(".") and q.name.endswith(TEMP_SUFFIX)) for q in p.iterdir()):
            continue
        names.append(p.name + ("/" if p.is_dir() else ""))
    return names


# ------------------------------------------------------------------------------------ input identity

def sample_frames(n: int) -> list[int]:
    """The frames whose thumbnails identify an input of `n` frames: first, middle, last."""
    return sorted({0, n // 2, n - 1})


def _thumbnail(frame: np.ndarray) -> list[int]:
    small = Image.fromarray(frame).resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8).ravel().tolist()


def _input_files(source: FrameSource) -> list[Path]:
    return list(source.files) if isinstance(source, ImageFolderSource) else [source.path]


def content_digest(source: FrameSource) -> str:
    """SHA-256 of the input's content, streamed: of the video file, or of every frame file with its name
    (so swapped, renamed, edited, added or removed frames all change it; a moved copy does not)."""
    digest = hashlib.sha256()
    buffer = bytearray(_DIGEST_CHUNK)
    view = memoryview(buffer)
    if isinstance(source, ImageFolderSource):
        named: list[tuple[str | None, Path]] = list(zip(source.names, source.files, strict=True))
    else:
        named = [(None, source.path)]
    for name, path in named:
        if name is not None:
            digest.update(name.encode() + b"\0")
        with open(path, "rb") as f:
            while n := f.readinto(buffer):
                digest.update(view[:n])
    return digest.hexdigest()


def input_identity(source: FrameSource) -> dict[str, Any]:
    """What identifies an input: its content (`sha256`, see `content_digest`), path, size on disk, frame
    count and frame size, and the thumbnails (8×8 RGB, box-filtered) of its first, middle and last frame
    (what runs recorded before content digests are compared by)."""
    n = len(source)
    frames = sample_frames(n)
    return {
        "path": str(source.path.resolve()),
        "bytes": sum(p.stat().st_size for p in _input_files(source)),
        "frames": n,
        "width": source.width,
        "height": source.height,
        "sha256": content_digest(source),
        "digest_of": "frame files" if isinstance(source, ImageFolderSource) else "file",
        "sample_frames": frames,
        "thumbnails": [_thumbnail(source[i]) for i in frames],
    }


def input_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """How `current` differs from the `recorded` input identity, one phrase each ([] when the same
    input). A moved or renamed input with the same content is the same input. Identities recorded
    before content digests are compared by bytes and thumbnails, so those runs stay resumable."""
    diffs = []
    for key, what in (("frames", "frames"), ("width", "pixels wide"), ("height", "pixels high"),
                      ("bytes", "bytes")):
        if recorded.get(key) != current.get(key):
            diffs.append(f"{recorded.get(key)} {what} then, {current.get(key)} now")
    if not diffs and recorded.get("sha256") and current.get("sha256"):
        if recorded["sha256"] != current["sha256"]:
            diffs.append(f"its content differs: sha256 of the {current.get('digest_of', 'input')}")
    elif not diffs:  # a run recorded before content digests: its thumbnails
        if recorded.get("sample_frames") != current.get("sample_frames"):
            diffs.append("other sample frames")
        else:
            for index, old, new in zip(current["sample_frames"], recorded.get("thumbnails", []),
                                       current["thumbnails"]):
                gap = np.abs(np.asarray(old, np.int16) - np.asarray(new, np.int16)).max(initial=0)
                if len(old) != len(new) or gap > THUMBNAIL_TOLERANCE:
                    diffs.append(f"frame {index} looks different")
                    break
    return diffs
