"""Uploaded inputs: size and length limits, safe zip extraction, opening the frames.

Uploads are copied under a fixed name into the browser session's own folder (the uploaded file name
is never used as a path), and zips of frames are unpacked member by member after checking every name:
no absolute paths, no `..`, no links, only .jpg/.png frames, bounded total size.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from samtrack.errors import InputError
from samtrack.io.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, FrameSource, open_source

ZIP_EXPANSION = 4  # a zip may unpack to at most this many times the upload limit


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


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or ":" in name:  # ":" catches Windows drive letters
        raise InputError(f"the zip holds {info.filename!r}, a name that points outside the archive; "
                         "zip the frames themselves")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InputError(f"the zip holds a link ({info.filename!r}); zip the frames themselves")
    return path


def extract_frames(archive: Path, dest: Path, max_bytes: int) -> Path:
    """Unpack the .jpg/.png frames of a zip into `dest` (flat); other files are skipped.

    Every name is checked before anything is written, so a bad archive leaves nothing behind.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            paths = [_member_path(i) for i in infos]
            frames = [(i, p) for i, p in zip(infos, paths, strict=True)
                      if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
            if not frames:
                raise InputError("the zip holds no .jpg or .png frames")
            names = [p.name for _, p in frames]
            if len(set(names)) != len(names):
                raise InputError("the zip holds several frames with the same file name in different folders; "
                                 "put one sequence in it")
            total = sum(i.file_size for i, _ in frames)
            if total > max_bytes * ZIP_EXPANSION:
                raise InputError(f"the zip unpacks to {human_size(total)}, more than this app accepts "
                                 f"({human_size(max_bytes * ZIP_EXPANSION)})")
            dest.mkdir(parents=True)
            for info, path in frames:
                with zf.open(info) as src, open(dest / path.name, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except zipfile.BadZipFile as exc:
        raise InputError(f"the upload is not a valid zip file ({exc})") from exc
    return dest


def open_upload(upload: str | Path, dest: Path, *, fps: float | None, max_bytes: int,
                max_frames: int) -> FrameSource:
    """Check an uploaded video or zip of frames, copy/unpack it into `dest` (a new folder) and open it.

    Raises InputError with a message for the page; `dest` is removed again on any error.
    """
    upload = Path(upload)
    suffix = upload.suffix.lower()
    if suffix not in VIDEO_SUFFIXES and suffix != ".zip":
        raise InputError(f"{upload.name!r} is not a video (mp4, mov, avi, mkv, webm) or a zip of frames")
    size = upload.stat().st_size
    if size > max_bytes:
        raise InputError(f"the upload is {human_size(size)}, larger than this app's limit of {human_size(max_bytes)} "
                         "(--max-upload)")
    try:
        if suffix == ".zip":
            source = open_source(extract_frames(upload, dest / "frames", max_bytes), fps=fps or None)
        else:
            dest.mkdir(parents=True)
            target = dest / f"input{suffix}"
            shutil.copyfile(upload, target)
            source = open_source(target)
        if len(source) > max_frames:
            source.close()
            raise InputError(f"the video has {len(source)} frames; this app accepts at most {max_frames} "
                             "(--max-frames): trim it first")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return source
