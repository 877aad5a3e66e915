"""Frame sources: one interface over video files, image folders and DAVIS-style datasets.

`open_source(path)` returns a `FrameSource`:

    src = open_source("clip.mp4")            # or a folder of .jpg/.png frames, or a DAVIS root
    len(src), src.fps, src.width, src.height, src.has_audio
    src.names[i]                             # output stem of frame i ("00000" for videos)
    frame = src[i]                           # H×W×3 uint8 RGB, random access
    for frame in src: ...                    # lazy, one frame in memory at a time

Video is decoded with PyAV. Opening a video demuxes (without decoding) every packet once to learn
the exact frame count and each frame's timestamp; `src[i]` then seeks to the key frame before
frame i and decodes forward, and consecutive accesses just keep decoding, so the file is never
held in memory. Rotation metadata (display matrix) and EXIF orientation are applied, so frames
come out the way a player shows them. Unreadable, corrupt or truncated files raise `InputError`
naming the file.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from samtrack.errors import InputError

if TYPE_CHECKING:
    from typing_extensions import Self

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
DEFAULT_FOLDER_FPS = 30.0
# EXIF orientations 5-8 swap width and height.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})
# Decoding forward this many frames is cheaper than a seek (which restarts at a key frame).
_FORWARD_DECODE_LIMIT = 48
_CACHE_FRAMES = 4
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def natural_key(name: str) -> list[object]:
    """Sort key that orders `frame2` before `frame10` (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class FrameSource(ABC):
    """A sequence of RGB frames with a frame rate and per-frame output names.

    Attributes:
        path: the file or folder the frames come from.
        fps: frames per second (float); folders default to 30 unless given.
        width, height: frame size after rotation metadata is applied.
        names: output stem per frame (image stem for folders, zero-padded index for videos);
            mask files for frame i are named `names[i] + ".png"`.
        has_audio: whether the source carries an audio stream.
    """

    path: Path
    fps: float
    width: int
    height: int
    names: list[str]
    has_audio: bool = False

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame `index` (negative counts from the end) as H×W×3 uint8 RGB."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"frame {index} is out of range: {self.path} has {n} frames")
        return self._read(index % n)

    @abstractmethod
    def _read(self, index: int) -> np.ndarray:
        """Decode frame `index` (0 <= index < len)."""

    @abstractmethod
    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield every frame in order, decoding lazily."""

    @property
    def start_time(self) -> float:
        """Presentation time of the first frame in seconds (0 for image folders)."""
        return self.frame_time(0)

    def frame_time(self, index: int) -> float:
        """Presentation time of frame `index` in seconds (index / fps for image folders)."""
        return index / self.fps

    def close(self) -> None:
        """Release open files (the source can still be iterated afterwards)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, frames={len(self)}, "
                f"size={self.width}x{self.height}, fps={self.fps:g})")


# ---------------------------------------------------------------------------------------- folders

def image_to_rgb(im: Image.Image, path: str | Path) -> np.ndarray:
    """The RGB uint8 pixels of a decoded image of any mode a frame file can have.

    8-bit modes (1, L, LA, P, PA, RGB, RGBA, RGBX, CMYK, YCbCr, HSV) convert with Pillow; alpha is
    ignored. 16-bit grey (I;16*, and I holding values 0..65535) keeps its high byte, as Pillow does
    for 16-bit colour PNGs. Modes without a defined 8-bit range (floating point, 32-bit integers beyond
    16 bits, LAB, premultiplied alpha) raise `InputError` naming `path`.
    """
    mode = im.mode
    if mode in _EIGHT_BIT_MODES:
        return np.asarray(im.convert("RGB"))
    if mode == "I" or mode.startswith("I;16"):
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 0xFFFF):
            raise _mode_error(path, mode, f"integers beyond 16 bits ({values.min()}..{values.max()})")
        gray = (values.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        raise _mode_error(path, mode, "floating-point pixels, whose brightness range is not defined")
    raise _mode_error(path, mode, f"{mode} pixels, which have no defined RGB conversion")


_EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "HSV"})


def _mode_error(path: str | Path, mode: str, what: str) -> InputError:
    return InputError(f"{path} holds {what} (image mode {mode}); save the frames as 8-bit or 16-bit "
                      "RGB/grey PNG or JPEG")


def _load_image(path: Path) -> np.ndarray:
    """Decode an image file to RGB uint8 with EXIF orientation applied."""
    try:
        with Image.open(path) as im:
            return image_to_rgb(ImageOps.exif_transpose(im), path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}; replace or delete the file") from exc


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed, read from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(_EXIF_ORIENTATION_TAG) in _TRANSPOSED_ORIENTATIONS:
                w, h = h, w
            return w, h
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}; replace or delete the file") from exc


class ImageFolderSource(FrameSource):
    """Frames stored as .jpg/.jpeg/.png files in one folder, in natural sort order.

    `annotations` is the matching DAVIS `Annotations/<res>/<seq>` folder when the frames lie in a
    DAVIS-style `JPEGImages/<res>/<seq>` layout and that folder exists, else None.
    """

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.path = Path(path)
        files = [p for p in self.path.iterdir()
                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        if not files:
            raise InputError(f"no .jpg/.jpeg/.png frames in {self.path}; "
                             "give a folder of frame images or a video file")
        files.sort(key=lambda p: natural_key(p.name))
        names = [p.stem for p in files]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise InputError(f"two frames in {self.path} share the name {dup!r} (e.g. .jpg and .png); "
                             "keep one file per frame")
        self.files = files
        self.names = names
        self.fps = float(fps) if fps else DEFAULT_FOLDER_FPS
        self.width, self.height = _image_size(files[0])
        self.annotations = self._davis_annotations()

    def _davis_annotations(self) -> Path | None:
        parts = self.path.resolve().parts
        for depth in (2, 3):  # JPEGImages/<seq> (YouTube-VOS) or JPEGImages/<res>/<seq> (DAVIS)
            if len(parts) > depth and parts[-depth] == "JPEGImages":
                ann = Path(*parts[:-depth], "Annotations", *parts[-depth + 1:])
                return ann if ann.is_dir() else None
        return None

    def _read(self, index: int) -> np.ndarray:
        frame = _load_image(self.files[index])
        if frame.shape[:2] != (self.height, self.width):
            raise InputError(f"{self.files[index]} is {frame.shape[1]}x{frame.shape[0]} but the first frame "
                             f"is {self.width}x{self.height}; all frames of a sequence must have one size")
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._read(i)


# ------------------------------------------------------------------------------------------ video

def _video_error(path: Path, exc: Exception, what: str = "cannot read video") -> InputError:
    return InputError(f"{what} {path}: {exc}; the file is corrupt, truncated or not a video "
                      "(re-export it, or extract its frames into a folder)")


class VideoSource(FrameSource):
    """Frames of the first video stream of a file PyAV can open (mp4, mov, avi, mkv, webm, ...).

    Random access seeks to the key frame before the wanted one and decodes forward; in-order
    access keeps the decoder running. A few recent frames are cached. Thread-safe.
    """

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._next = 0  # index of the frame the running decoder yields next
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

        container = self._open()
        try:
            stream = container.streams.video[0]
            self.has_audio = len(container.streams.audio) > 0
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.fps = float(fps) if fps else (float(rate) if rate else DEFAULT_FOLDER_FPS)
            self.time_base: Fraction = stream.time_base or Fraction(1, 1)
            self._timestamps = self._scan(container, stream)
        finally:
            container.close()
        if not self._timestamps:
            raise InputError(f"{self.path} has no decodable video frames; check the file plays")
        self._index = {ts: i for i, ts in enumerate(self._timestamps)}
        digits = max(5, len(str(len(self._timestamps) - 1)))
        self.names = [f"{i:0{digits}d}" for i in range(len(self._timestamps))]
        first = self._read(0)
        self.height, self.width = first.shape[:2]

    def _open(self) -> av.container.InputContainer:
        if not self.path.is_file():
            raise InputError(f"video file not found: {self.path}")
        try:
            container = av.open(str(self.path), mode="r")
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise _video_error(self.path, exc) from exc
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.path} has no video stream; give a video file or a folder of frames")
        container.streams.video[0].thread_type = "AUTO"
        return container

    def _scan(self, container: av.container.InputContainer, stream: av.VideoStream) -> list[int]:
        """Presentation timestamps of every frame, in display order (demux only, no decoding)."""
        stamps: list[int] = []
        discarded = 0  # packets an edit list cuts away: in the index, never shown
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.is_discard:
                    discarded += 1
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    raise InputError(f"{self.path} has video packets without timestamps; "
                                     "remux it first, e.g. `ffmpeg -i IN -c copy OUT.mp4`")
                stamps.append(ts)
        except av.FFmpegError as exc:
            raise _video_error(self.path, exc) from exc
        if stream.frames and len(stamps) + discarded < stream.frames:
            raise InputError(f"{self.path} lists {stream.frames} frames but only {len(stamps)} can be read; "
                             "the file is truncated (re-export or re-download it)")
        stamps.sort()
        return stamps

    def frame_time(self, index: int) -> float:
        return float(self._timestamps[index] * self.time_base)

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        # swscale assumes limited range unless told; full-range (JPEG-style) video is common from phones.
        full = frame.color_range == _FULL_RANGE
        rgb = frame.to_ndarray(format="rgb24", src_color_range=_FULL_RANGE if full else None)
        turns = round(frame.rotation / 90) % 4
        # The display matrix says how far to turn counterclockwise for display.
        return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb

    def _frame_index(self, frame: av.VideoFrame) -> int:
        """Index of a decoded frame: from its timestamp, else one after the previous frame."""
        if frame.pts is not None and frame.pts in self._index:
            return self._index[frame.pts]
        return self._next if self._next >= 0 else -1

    def _seek(self, index: int) -> None:
        if self._container is None:
            self._container = self._open()
        stream = self._container.streams.video[0]
        try:
            self._container.seek(self._timestamps[index], stream=stream, backward=True, any_frame=False)
        except av.FFmpegError as exc:
            raise _video_error(self.path, exc, "cannot seek in video") from exc
        self._frames = iter(self._container.decode(stream))
        self._next = 0 if index == 0 else -1  # unknown until the first frame arrives

    def _decode_next(self) -> tuple[int, av.VideoFrame] | None:
        assert self._frames is not None
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as exc:
            raise _video_error(self.path, exc, "cannot decode video") from exc
        idx = self._frame_index(frame)
        self._next = idx + 1 if idx >= 0 else -1
        return idx, frame

    def _read(self, index: int) -> np.ndarray:
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index].copy()
            if self._frames is None or not (0 <= self._next <= index <= self._next + _FORWARD_DECODE_LIMIT):
                self._seek(index)
            got = self._decode_until(index)
            if got is None:  # seek landed past the frame (imprecise index): decode from the start
                self._seek(0)
                got = self._decode_until(index)
            if got is None:
                raise InputError(f"cannot decode frame {index} of {self.path}; the file is truncated "
                                 "or corrupt (re-export it)")
            self._cache[index] = got
            if len(self._cache) > _CACHE_FRAMES:
                self._cache.popitem(last=False)
            return got.copy()

    def _decode_until(self, index: int) -> np.ndarray | None:
        while True:
            item = self._decode_next()
            if item is None:
                self._frames = None
                return None
            idx, frame = item
            if idx == index:
                return self._to_rgb(frame)
            if idx > index or idx < 0:  # past it, or position unknown (no timestamp after a seek)
                self._frames = None
                return None

    def __iter__(self) -> Iterator[np.ndarray]:
        container = self._open()
        count = 0
        try:
            for frame in container.decode(container.streams.video[0]):
                yield self._to_rgb(frame)
                count += 1
                if count == len(self):
                    return
        except av.FFmpegError as exc:
            raise _video_error(self.path, exc, "cannot decode video") from exc
        finally:
            container.close()
        if count < len(self):
            raise InputError(f"{self.path} ended after {count} of {len(self)} frames; the file is truncated "
                             "or corrupt (re-export it)")

    def close(self) -> None:
        with self._lock:
            if self._container is not None:
                self._container.close()
            self._container = None
            self._frames = None
            self._cache.clear()


# ------------------------------------------------------------------------------------------ entry

def _davis_sequence_folder(root: Path, sequence: str | None, resolution: str) -> Path:
    images = root / "JPEGImages"
    base = images / resolution if (images / resolution).is_dir() else images
    available = sorted(p.name for p in base.iterdir() if p.is_dir())
    if sequence is None:
        raise InputError(f"{root} is a DAVIS-style dataset; pick a sequence "
                         f"(one of: {', '.join(available[:30])})")
    folder = base / sequence
    if not folder.is_dir():
        raise InputError(f"sequence {sequence!r} not found under {base}; available: {', '.join(available[:30])}")
    return folder


def open_source(path: str | Path, *, fps: float | None = None, sequence: str | None = None,
                resolution: str = "480p") -> FrameSource:
    """Open a video file, a folder of frame images, or one sequence of a DAVIS-style dataset.

    Args:
        path: a video file (mp4, mov, avi, mkv, webm, anything PyAV decodes), a folder of
            .jpg/.jpeg/.png frames (natural sort order, file stems kept as frame names), a DAVIS
            sequence folder (`.../JPEGImages/480p/<seq>`), or a DAVIS root (with `sequence`).
        fps: override the frame rate (image folders default to 30).
        sequence: sequence name when `path` is a DAVIS root (a folder holding `JPEGImages/`).
        resolution: DAVIS resolution folder under `JPEGImages/` (used when present).

    Raises:
        InputError: the path is missing, unreadable, corrupt or holds no frames.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p} does not exist; give a video file or a folder of frames")
    if p.is_dir():
        if (p / "JPEGImages").is_dir():
            p = _davis_sequence_folder(p, sequence, resolution)
        return ImageFolderSource(p, fps=fps)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"{p} is a single image; put the frames of a sequence in a folder and give the folder")
    return VideoSource(p, fps=fps)
