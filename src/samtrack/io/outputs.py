"""The run directory: per-frame masks written as tracking goes, then every derived output.

Layout of `out_dir` after `finalize()`:

    masks/<name>.png    one DAVIS palette id mask per frame, named after the input frame
    overlay.mp4         H.264 yuv420p at the input fps; the input video's audio when it has some
    overlay.gif         small preview (<= 480 px wide, <= 10 fps)
    masks.zip           the mask PNGs
    masks_rle.json      COCO-style RLE per object and frame, with bbox and area
    objects.json        id -> label, prompt, first/last frame
    run.json            source, settings, model names, library versions, timings

Typical use from a tracking session (`write_mask` may be called from any thread):

    run = RunWriter(out_dir, source, background=True)
    todo = [i for i in range(len(source)) if i not in set(run.done_frames())]   # resume
    for i in todo:
        run.write_mask(i, ids)          # queued; PNG encoding happens on a worker thread
    run.finalize(objects={1: {"label": "swan", "prompt": {"text": "swan"}}},
                 settings={...}, models={...}, timings={...})

Every file is written under a temporary name and renamed when complete, so an interrupted run
leaves only whole masks; `done_frames()` lists them so the run can resume where it stopped.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import queue
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from samtrack.errors import InputError, OutputError
from samtrack.io.atomic import atomic_path, remove_stale_temps, write_text_atomic, writing
from samtrack.io.masks import as_id_mask, load_id_mask, save_id_mask
from samtrack.io.overlay import render_overlay
from samtrack.io.rundir import create_out_dir, link_refusal
from samtrack.io.sources import FrameSource
from samtrack.io.video import BackgroundEncoder, GifWriter, Mp4Writer

if TYPE_CHECKING:
    from typing_extensions import Self

MASKS_DIR = "masks"
OVERLAY_MP4 = "overlay.mp4"
OVERLAY_GIF = "overlay.gif"
MASKS_ZIP = "masks.zip"
RLE_JSON = "masks_rle.json"
OBJECTS_JSON = "objects.json"
RUN_JSON = "run.json"
# What `finalize` writes beside masks/: stale once the masks change, replaced with --force.
OUTPUT_FILES = (OVERLAY_MP4, OVERLAY_GIF, MASKS_ZIP, RLE_JSON, OBJECTS_JSON, RUN_JSON)
RENDER_JSON = "render.json"  # `samtrack render`'s record: its frames and the masks it wrote
RLE_FORMAT = "samtrack-rle/1"
_VERSIONED = ("samtrack", "numpy", "torch", "torchvision", "transformers", "av", "pillow", "pycocotools")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a run depends on (without importing them)."""
    versions = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _json_value(value: Any) -> Any:
    """JSON form of the values prompts and settings commonly hold (numpy scalars/arrays, paths)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return list(value)
    return str(value)


def _object_info(value: Any) -> dict[str, Any]:
    """Normalise an `objects` entry: a label string, or a mapping with `label` and `prompt`."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {"label": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise InputError(f"object info must be a label string or a mapping, got {type(value).__name__}")


class _RleCollector:
    """Per-object COCO RLE, bbox, area and frame span, accumulated one id mask at a time."""

    def __init__(self) -> None:
        self.frames: dict[int, list[dict[str, Any]]] = {}

    def add(self, index: int, name: str, ids: np.ndarray) -> None:
        present = np.nonzero(np.bincount(ids.ravel(), minlength=256)[1:])[0] + 1
        if present.size == 0:
            return
        ids_t = np.ascontiguousarray(ids.T)  # so each `== id` test below is already Fortran-ordered
        rles = [mask_utils.encode((ids_t == obj_id).view(np.uint8).T) for obj_id in present]
        boxes = mask_utils.toBbox(rles)
        areas = mask_utils.area(rles)
        for obj_id, rle, box, area in zip(present, rles, boxes, areas):
            self.frames.setdefault(int(obj_id), []).append({
                "frame": index, "name": name,
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                "bbox": [float(v) for v in box], "area": int(area),
            })


class RunWriter:
    """Writes a run directory: masks during tracking, then overlays and records in `finalize`.

    Args:
        out_dir: the run directory (created if needed; existing masks are kept for resuming).
        source: the frames the masks belong to; mask file names come from `source.names`.
        background: encode mask PNGs on a worker thread so `write_mask` returns at once
            (at most `max_pending` masks wait in memory; `write_mask` blocks beyond that).
    """

    def __init__(self, out_dir: str | Path, source: FrameSource, *, background: bool = False,
                 max_pending: int = 16) -> None:
        self.out_dir = Path(out_dir)
        self.masks_dir = self.out_dir / MASKS_DIR
        self.source = source
        create_out_dir(self.out_dir)
        check_mask_names(self.out_dir, source.names)
        if self.masks_dir.is_symlink():
            raise link_refusal(self.masks_dir)
        if self.masks_dir.exists() and not self.masks_dir.is_dir():
            raise OutputError(f"{self.masks_dir} is a file; samtrack writes its masks in a folder of that name: "
                              "move the file, or choose another output directory")
        with writing(self.masks_dir):
            self.masks_dir.mkdir(exist_ok=True)
        remove_stale_temps(self.masks_dir)
        remove_stale_temps(self.out_dir)
        # A failed background write: the masks queued after it are dropped, not written (a gap would break
        # resuming), and the next write, flush or close raises it.
        self._error: BaseException | None = None
        self._queue: queue.Queue[tuple[int, np.ndarray] | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=max_pending)
            self._thread = threading.Thread(target=self._worker, name="samtrack-mask-writer", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------------------- masks

    def mask_path(self, index: int) -> Path:
        """Where the mask of frame `index` lives: masks/<source name>.png."""
        return self.masks_dir / f"{self.source.names[index]}.png"

    def write_mask(self, index: int, ids: np.ndarray) -> None:
        """Save the id mask of frame `index` (atomically; queued when `background`)."""
        self._raise_worker_error()
        if not 0 <= index < len(self.source):
            raise IndexError(f"frame {index} is out of range: the source has {len(self.source)} frames")
        ids = as_id_mask(ids)
        if ids.shape != (self.source.height, self.source.width):
            raise InputError(f"mask for frame {index} is {ids.shape[1]}x{ids.shape[0]}, frames are "
                             f"{self.source.width}x{self.source.height}")
        if self._queue is None:
            save_id_mask(self.mask_path(index), ids)
        else:
            self._queue.put((index, ids.copy()))  # the caller may reuse its array

    def _worker(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    path = self.mask_path(item[0])
                    with writing(path):
                        save_id_mask(path, item[1])
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread by the next call
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            if self._queue is not None and self._thread is not None:
                self._queue.join()  # the worker drops what was queued after the failure
            error, self._error = self._error, None
            raise error

    def flush(self) -> None:
        """Wait until every queued mask is on disk (re-raises a failed background write)."""
        if self._queue is not None:
            self._queue.join()
        self._raise_worker_error()

    def close(self) -> None:
        """Flush and stop the background writer (the directory stays valid and resumable)."""
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._raise_worker_error()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_done(self, index: int) -> bool:
        """Whether frame `index` has a complete mask file of the right size."""
        path = self.mask_path(index)
        try:
            with Image.open(path) as im:
                if im.format != "PNG" or im.size != (self.source.width, self.source.height):
                    return False
                im.verify()  # walks the chunks and checks their CRCs
            return True
        except (FileNotFoundError, UnidentifiedImageError, OSError, SyntaxError, ValueError):
            return False

    def done_frames(self) -> list[int]:
        """Indices of frames whose mask is already written and valid, for resuming a run."""
        self.flush()
        return [i for i in range(len(self.source)) if self.is_done(i)]

    def read_mask(self, index: int) -> np.ndarray:
        """The id mask of frame `index` as written (e.g. the last one, to re-seed a tracker)."""
        self.flush()
        ids = load_id_mask(self.mask_path(index))
        if ids.shape != (self.source.height, self.source.width):
            raise InputError(f"{self.mask_path(index)} is {ids.shape[1]}x{ids.shape[0]}, frames are "
                             f"{self.source.width}x{self.source.height}")
        return ids

    # ---------------------------------------------------------------------------- finalize

    def finalize(self, objects: Mapping[int, Any] | None = None, settings: Mapping[str, Any] | None = None,
                 models: Mapping[str, Any] | None = None, timings: Mapping[str, float] | None = None, *,
                 alpha: float = 0.5, contours: bool = True, draw_labels: bool = False,
                 show_ids: bool = False, video: bool = True, gif: bool = True,
                 frames: Sequence[int] | None = None, progress: bool = True) -> dict[str, Path]:
        """Render the overlay video and GIF and write the zip, RLE JSON, objects.json and run.json.

        Every frame the run covers must have a mask. Frames are decoded, blended and encoded one
        at a time, so memory stays flat however long the video is.

        Args:
            objects: id -> label string, or id -> {"label": str, "prompt": any JSON value, ...}.
            settings, models, timings: recorded in run.json as given (timings in seconds).
            alpha, contours, draw_labels, show_ids: overlay style (see `render_overlay`).
            video, gif: whether to write overlay.mp4 / overlay.gif.
            frames: the frame indices the run covers (default: every frame of the source); only
                they enter the overlays, zip and RLE, and run.json records them. The overlay video
                keeps the input's sound when they are consecutive.
            progress: show a progress bar.

        Returns:
            Output name -> path of every file written.
        """
        started = time.perf_counter()
        self.flush()
        source = self.source
        covered = list(range(len(source))) if frames is None else sorted(set(frames))
        if not covered or not 0 <= covered[0] <= covered[-1] < len(source):
            raise InputError(f"frames to finalise must be a non-empty subset of 0..{len(source) - 1}")
        n = len(covered)
        missing = [source.names[i] for i in covered if not self.mask_path(i).is_file()]
        if missing:
            raise InputError(f"{len(missing)} of {n} frames have no mask in {self.masks_dir} "
                             f"(first: {', '.join(missing[:5])}); write them before finalising")
        consecutive = covered[-1] - covered[0] + 1 == n
        info = {int(k): _object_info(v) for k, v in (objects or {}).items()}
        labels = {k: str(v["label"]) for k, v in info.items() if v.get("label")}

        outputs: dict[str, Path] = {}
        writers: list[Mp4Writer | GifWriter] = []
        encoder: BackgroundEncoder | None = None
        try:
            if video:
                with writing(self.out_dir / OVERLAY_MP4):
                    writers.append(Mp4Writer(self.out_dir / OVERLAY_MP4, source.fps, source.width,
                                             source.height,
                                             audio_from=source.path if source.has_audio and consecutive else None,
                                             audio_offset=source.frame_time(covered[0])))
            if gif:
                with writing(self.out_dir / OVERLAY_GIF):
                    writers.append(GifWriter(self.out_dir / OVERLAY_GIF, source.fps, source.width,
                                             source.height))
            encoder = BackgroundEncoder(writers) if writers else None
            rle = _RleCollector()
            with atomic_path(self.out_dir / MASKS_ZIP) as zip_tmp, \
                    zipfile.ZipFile(zip_tmp, "w", compression=zipfile.ZIP_STORED) as archive, \
                    tqdm(total=n, desc="render", unit="frame", disable=not progress) as bar:
                for i, frame in self._frames(covered):
                    path = self.mask_path(i)
                    ids = self.read_mask(i)
                    archive.write(path, arcname=path.name)
                    rle.add(i, source.names[i], ids)
                    if encoder is not None:
                        encoder.write(render_overlay(frame, ids, labels if draw_labels else None, alpha=alpha,
                                                     contours=contours, show_ids=show_ids))
                    bar.update()
                if encoder is not None:
                    encoder.close()  # inside the zip's block: an encoding error leaves no zip either
            outputs.update({writer.path.name: writer.path for writer in writers})
        except BaseException:
            if encoder is not None:
                encoder.abort()
            for writer in writers:
                writer.abort()
            raise
        outputs[MASKS_ZIP] = self.out_dir / MASKS_ZIP

        ranges = frame_ranges(covered)
        outputs[RLE_JSON] = self._write_rle(rle, info, ranges)
        outputs[OBJECTS_JSON] = self._write_objects(rle, info)
        all_timings = {**(timings or {}), "finalize_s": round(time.perf_counter() - started, 3)}
        span = {"covered": ranges, "count": n, "first": source.names[covered[0]],
                "last": source.names[covered[-1]]}
        outputs[RUN_JSON] = self._write_run(settings, models, all_timings, outputs, span)
        return outputs

    def _frames(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(index, frame) of the given frames, decoding in order."""
        if len(indices) == len(self.source):
            yield from enumerate(self.source)
        else:
            for i in indices:
                yield i, self.source[i]

    def _write_rle(self, rle: _RleCollector, info: dict[int, dict[str, Any]], covered: list[list[int]]) -> Path:
        doc = {
            "format": RLE_FORMAT,
            "width": self.source.width, "height": self.source.height,
            "frames": self.source.names,
            "covered": covered,
            "objects": [{"id": obj_id, "label": info.get(obj_id, {}).get("label"), "frames": frames}
                        for obj_id, frames in sorted(rle.frames.items())],
        }
        path = self.out_dir / RLE_JSON
        write_text_atomic(path, json.dumps(doc, separators=(",", ":")))
        return path

    def _write_objects(self, rle: _RleCollector, info: dict[int, dict[str, Any]]) -> Path:
        names = self.source.names
        doc: dict[str, dict[str, Any]] = {}
        for obj_id in sorted(set(info) | set(rle.frames)):
            seen = [f["frame"] for f in rle.frames.get(obj_id, [])]
            entry = {"label": None, "prompt": None, **info.get(obj_id, {})}
            entry.update({
                "first_frame": seen[0] if seen else None, "last_frame": seen[-1] if seen else None,
                "first_name": names[seen[0]] if seen else None, "last_name": names[seen[-1]] if seen else None,
                "num_frames": len(seen),
            })
            doc[str(obj_id)] = entry
        path = self.out_dir / OBJECTS_JSON
        write_text_atomic(path, json.dumps(doc, indent=2, default=_json_value))
        return path

    def _write_run(self, settings: Mapping[str, Any] | None, models: Mapping[str, Any] | None,
                   timings: Mapping[str, float], outputs: Mapping[str, Path], frames: dict[str, Any]) -> Path:
        src = self.source
        doc = {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": {"path": str(src.path.resolve()), "kind": type(src).__name__, "frames": len(src),
                       "width": src.width, "height": src.height, "fps": src.fps, "has_audio": src.has_audio},
            "frames": frames,
            "settings": dict(settings or {}),
            "models": dict(models or {}),
            "timings": dict(timings),
            "versions": library_versions(),
            "outputs": sorted([*outputs, RUN_JSON, MASKS_DIR]),
        }
        path = self.out_dir / RUN_JSON
        write_text_atomic(path, json.dumps(doc, indent=2, default=_json_value))
        return path


def check_mask_names(out_dir: Path, names: Sequence[str]) -> None:
    """Refuse frame names whose mask file (`<name>.png`) the file system of `out_dir` cannot hold."""
    try:
        limit = os.pathconf(out_dir, "PC_NAME_MAX")
    except (OSError, ValueError):
        return  # no limit known here: a name too long is still reported when it is written
    longest = max(names, key=lambda n: len(n.encode()), default="")
    size = len(f"{longest}.png".encode())
    if size > limit:
        raise OutputError(f"the mask file name {longest}.png is {size} bytes long, more than the {limit} the file "
                          f"system of {out_dir} allows; give the frames shorter names, or write to another disk")


def frame_ranges(indices: list[int]) -> list[list[int]]:
    """Sorted frame indices as inclusive [first, last] runs: [0, 1, 2, 5] -> [[0, 2], [5, 5]]."""
    ranges: list[list[int]] = []
    for i in indices:
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def frame_span(indices: list[int]) -> str:
    """'frames 0-7' for consecutive frames, else 'frames 0-3, 9-12'."""
    return "frames " + ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in frame_ranges(indices))
