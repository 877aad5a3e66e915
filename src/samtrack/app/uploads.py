"""Uploaded inputs: size and length limits, safe zip extraction, opening the frames.

Uploads are copied into the browser session's own folder under a name made of the uploaded name's
letters, digits, '-' and '_' only (`safe_stem`: the exports name the sequence after it; the uploaded
name itself is never used as a path), and zips of frames are unpacked member by member after checking, from the
archive's index and before anything is written, every name (no absolute paths, no `..`, no links, only
.jpg/.png frames), the number of frames, each frame's size, their total and the free disk space.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import IO

from samtrack.errors import InputError
from samtrack.io.atomic import DISK_FULL
from samtrack.io.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, FrameSource, open_source

ZIP_EXPANSION = 4  # a zip may unpack to at most this many times the upload limit
# No video frame file is larger (a 4K RGBA frame stored as an uncompressed PNG is 33 MB): a zip member
# that declares more is a decompression bomb, not a frame.
MAX_FRAME_BYTES = 64 << 20
KEEP_FREE = 512 << 20  # unpacking leaves this much free on the app's disk, for the run's masks and outputs
_CHUNK = 1 << 20


def unpack_limit(frames: int, max_bytes: int) -> int:
    """The most a zip of `frames` frames may unpack to: frames × `MAX_FRAME_BYTES`, and never more than
    `ZIP_EXPANSION` × the upload limit."""
    return min(frames * MAX_FRAME_BYTES, ZIP_EXPANSION * max_bytes)


def parse_size(text: str) -> int:
    """'2gb', '500mb', '100kb' or a plain number of bytes -> bytes."""
    units = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "b": 1}
    t = text.strip().lower()
    for suffix, factor in units.items():
        if t.endswith(suffix):
            number = t[: -len(suffix)].strip()
            break
    else:
        number, factor = t, 1
    try:
        value = float(number) * factor
    except ValueError:
        raise InputError(f"size must look like 2gb, 500mb or a number of bytes, got {text!r}") from None
    if value <= 0:
        raise InputError(f"size must be positive, got {text!r}")
    return int(value)


def human_size(n: int) -> str:
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n} bytes"


def safe_stem(name: str) -> str:
    """A file name's stem reduced to letters, digits, '-' and '_' (at most 64), or 'input'."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_-")[:64]
    return stem or "input"


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or ":" in name:  # ":" catches Windows drive letters
        raise InputError(f"the zip holds {info.filename!r}, a name that points outside the archive; "
                         "zip the frames themselves")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InputError(f"the zip holds a link ({info.filename!r}); zip the frames themselves")
    return path


def _free_bytes(path: Path) -> int:
    """Free space on the disk that holds `path` (or its nearest existing parent)."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    return shutil.disk_usage(existing).free


def _check_room(size: int, dest: Path, what: str) -> None:
    free = _free_bytes(dest)
    if size > free - KEEP_FREE:
        raise InputError(f"{what} {human_size(size)}, but this app's disk has {human_size(free)} free (and keeps "
                         f"{human_size(KEEP_FREE)} for the run's outputs); free some space, or upload less")


def _copy_member(src: IO[bytes], out: IO[bytes], declared: int, name: str) -> None:
    """Copy one member, stopping as soon as it passes the size its header declares."""
    copied = 0
    while chunk := src.read(_CHUNK):
        copied += len(chunk)
        if copied > declared:
            raise InputError(f"the zip's {name!r} unpacks to more than the {human_size(declared)} it declares: the "
                             "archive is damaged or forged; zip the frames again")
        out.write(chunk)


def extract_frames(archive: Path, dest: Path, max_bytes: int, *, max_frames: int) -> Path:
    """Unpack the .jpg/.png frames of a zip into `dest` (flat); other files are skipped.

    Everything is checked before anything is written, from the archive's own index: every name, the
    number of frames (at most `max_frames`), each frame's size (at most `MAX_FRAME_BYTES`), their total
    (at most `unpack_limit`) and the free space; unpacking then stops as soon as a member passes its
    declared size. A refused or failed archive leaves nothing behind.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            paths = [_member_path(i) for i in infos]
            frames = [(i, p) for i, p in zip(infos, paths, strict=True)
                      if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
            if not frames:
                raise InputError("the zip holds no .jpg or .png frames")
            if len(frames) > max_frames:
                raise InputError(f"the zip holds {len(frames)} frames; this app accepts at most {max_frames} "
                                 "(--max-frames): zip fewer frames")
            names = [p.name for _, p in frames]
            if len(set(names)) != len(names):
                raise InputError("the zip holds several frames with the same file name in different folders; "
                                 "put one sequence in it")
            biggest, path = max(frames, key=lambda f: f[0].file_size)
            if biggest.file_size > MAX_FRAME_BYTES:
                raise InputError(f"the zip holds {path.name!r}, which unpacks to {human_size(biggest.file_size)}: "
                                 f"more than a video frame can be ({human_size(MAX_FRAME_BYTES)}); zip the video's "
                                 "frames as .jpg or .png images")
            total = sum(i.file_size for i, _ in frames)
            limit = unpack_limit(len(frames), max_bytes)
            if total > limit:
                raise InputError(f"the zip unpacks to {human_size(total)}, more than this app accepts "
                                 f"({human_size(limit)})")
            _check_room(total, dest, "the zip unpacks to")
            dest.mkdir(parents=True)
            try:
                for info, path in frames:
                    with zf.open(info) as src, open(dest / path.name, "wb") as out:
                        _copy_member(src, out, info.file_size, path.name)
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
    except zipfile.BadZipFile as exc:
        raise InputError(f"the upload is not a valid zip file ({exc})") from exc
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise InputError("this app's disk filled up while unpacking the zip; free some space, or upload less") from exc
    return dest


def discard_upload(upload: str | Path, cache: Path) -> None:
    """Delete an uploaded file once it has been opened, when it lies in the app's own upload `cache`
    (Gradio keeps a copy of every upload there; the tab works on its own copy). Anything else stays."""
    path = Path(upload)
    try:
        inside = path.resolve().is_relative_to(cache.resolve())
    except OSError:
        return
    if inside and not path.is_symlink() and path.is_file():
        path.unlink(missing_ok=True)
        with suppress(OSError):
            path.parent.rmdir()  # Gradio's folder for this upload, when nothing else is in it


def open_upload(upload: str | Path, dest: Path, *, fps: float | None, max_bytes: int,
                max_frames: int) -> FrameSource:
    """Check an uploaded video or zip of frames, copy/unpack it into `dest` (a new folder) and open it.

    Raises InputError with a message for the page; `dest` is removed again on any error.
    """
    upload = Path(upload)
    suffix = upload.suffix.lower()
    if suffix not in VIDEO_SUFFIXES and suffix != ".zip":
        raise InputError(f"{upload.name!r} is not a video (mp4, mov, avi, mkv, webm) or a zip of frames")
    try:
        size = upload.stat().st_size
    except FileNotFoundError:
        raise InputError("the upload is gone from the app's cache; upload the file again") from None
    if size > max_bytes:
        raise InputError(f"the upload is {human_size(size)}, larger than this app's limit of {human_size(max_bytes)} "
                         "(--max-upload)")
    try:
        if suffix == ".zip":
            source = open_source(extract_frames(upload, dest / safe_stem(upload.name), max_bytes,
                                                max_frames=max_frames), fps=fps or None)
        else:
            _check_room(size, dest, "the video is")
            dest.mkdir(parents=True)
            target = dest / f"{safe_stem(upload.name)}{suffix}"
            try:
                shutil.copyfile(upload, target)
            except OSError as exc:
                if exc.errno not in DISK_FULL:
                    raise
                raise InputError("this app's disk filled up while copying the video; free some space") from exc
            source = open_source(target)
        if len(source) > max_frames:
            source.close()
            raise InputError(f"the video has {len(source)} frames; this app accepts at most {max_frames} "
                             "(--max-frames): trim it first")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return source
