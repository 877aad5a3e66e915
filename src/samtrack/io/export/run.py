"""A finished run directory as the exporters read it, and its input's frames as a dataset holds them.

    run = read_run("runs/clip")          # run.json, objects.json and masks_rle.json (see io/outputs.py)
    run.covered, run.names, run.labels   # frames with masks, every input frame's name, id -> label
    run.rles(i)                          # {object id: COCO RLE} of frame i
    frames = FrameFiles(run, jpeg=True)  # the input, opened and checked against the run
    frames.write(i, folder)              # copies the frame file, or encodes a decoded frame as JPEG

A run is read from the outputs `finalize` writes, so an export holds exactly what the run's other
outputs hold. A session whose masks changed after its outputs were written is refused until it is
finalised again.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, UnidentifiedImageError

from samtrack.errors import InputError
from samtrack.io.outputs import OBJECTS_JSON, RLE_FORMAT, RLE_JSON, RUN_JSON
from samtrack.io.sources import FrameSource, ImageFolderSource, open_source

if TYPE_CHECKING:
    from typing_extensions import Self

SESSION_JSON = "session.json"  # written by tracking sessions (tracking/runrecord.py), read here only
JPEG_QUALITY = 95
_EXIF_ORIENTATION_TAG = 0x0112


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path.parent} has no {path.name}: {what}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read {path} ({exc}); run `samtrack render` or resume the run to write it "
                         "again") from exc


def check_run_dir(path: str | Path) -> Path:
    """`path` as a run directory; raises `InputError` when it is missing or is not a samtrack run."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        what = "does not exist" if not run_dir.exists() else "is not a folder"
        raise InputError(f"{run_dir} {what}; give the --out folder of a `samtrack track` or `samtrack render` run")
    if not (run_dir / RUN_JSON).is_file() and not (run_dir / SESSION_JSON).is_file():
        raise InputError(f"{run_dir} is not a samtrack run (it has no {RUN_JSON}); give the --out folder of a "
                         "`samtrack track` or `samtrack render` run")
    return run_dir


@dataclass
class Run:
    """What a finished run holds: frame names and size, the frames it covers, objects and masks."""

    path: Path
    names: list[str]
    covered: list[int]
    width: int
    height: int
    fps: float
    source_path: Path | None
    source_is_video: bool
    labels: dict[int, str | None]
    _rles: dict[int, dict[int, dict]] = field(repr=False)

    @property
    def object_ids(self) -> list[int]:
        return sorted(self.labels)

    def rles(self, index: int) -> dict[int, dict]:
        """{object id: COCO RLE (pycocotools form)} of frame `index`, by id; {} for an empty frame."""
        return self._rles.get(index, {})

    def id_mask(self, index: int) -> np.ndarray:
        """The uint8 H×W id mask of frame `index`."""
        ids = np.zeros((self.height, self.width), dtype=np.uint8)
        for obj_id, rle in self.rles(index).items():
            ids[mask_utils.decode(rle).astype(bool)] = obj_id
        return ids

    def frames_of(self, obj_id: int) -> list[int]:
        """The covered frames where object `obj_id` has a mask."""
        return [i for i in self.covered if obj_id in self.rles(i)]

    @property
    def uncovered(self) -> list[list[int]]:
        """Inclusive [first, last] ranges of the input's frames that the run does not cover."""
        covered = set(self.covered)
        ranges: list[list[int]] = []
        for i in range(len(self.names)):
            if i in covered:
                continue
            if ranges and ranges[-1][1] == i - 1:
                ranges[-1][1] = i
            else:
                ranges.append([i, i])
        return ranges

    @property
    def sequence(self) -> str:
        """A name for the run's video: the input's file or folder name (else the run directory's)."""
        if self.source_path is None:
            name = self.path.resolve().name
        else:
            name = self.source_path.stem if self.source_is_video else self.source_path.name
        return name.strip(". ") or "video"


def read_run(path: str | Path) -> Run:
    """Read a finished run (see the module docstring); `InputError` says why a directory cannot be read."""
    run_dir = check_run_dir(path)
    session_file = run_dir / SESSION_JSON
    session = _load_json(session_file, "") if session_file.is_file() else None
    if session is not None and not (run_dir / RUN_JSON).is_file():
        raise InputError(f"the run in {run_dir} is not finished: its outputs are not written yet; finish it "
                         "with `samtrack track ... --resume` (or Finalize in the app), then export")
    if isinstance(session, dict) and session.get("finalized") is False:
        raise InputError(f"the masks of the run in {run_dir} changed after its outputs were written; finalise it "
                         "again (`samtrack track ... --resume`, or Finalize in the app), then export")
    info = _load_json(run_dir / RUN_JSON, "the run was never finalised")
    doc = _load_json(run_dir / RLE_JSON, "the run was never finalised")
    objects = _load_json(run_dir / OBJECTS_JSON, "the run was never finalised")
    if not isinstance(doc, dict) or doc.get("format") != RLE_FORMAT or not isinstance(info, dict):
        raise InputError(f"{run_dir / RLE_JSON} is not a samtrack {RLE_FORMAT} file; render the run again "
                         "with `samtrack render`")
    try:
        width, height, names = int(doc["width"]), int(doc["height"]), [str(n) for n in doc["frames"]]
        covered = sorted({i for a, b in doc["covered"] for i in range(int(a), int(b) + 1)})
        rles: dict[int, dict[int, dict]] = {}
        labels: dict[int, str | None] = {}
        for obj in doc["objects"]:
            obj_id = int(obj["id"])
            labels[obj_id] = obj.get("label") or None
            for entry in obj["frames"]:
                seg = entry["segmentation"]
                if [int(v) for v in seg["size"]] != [height, width]:
                    raise ValueError(f"object {obj_id} on frame {entry['frame']} is {seg['size']}")
                rles.setdefault(int(entry["frame"]), {})[obj_id] = {
                    "size": [height, width], "counts": str(seg["counts"]).encode("ascii")}
        for key, entry in objects.items():
            label = entry.get("label") if isinstance(entry, dict) else entry
            labels[int(key)] = labels.get(int(key)) or (str(label) if label else None)
        source = info.get("source") or {}
        fps = float(source.get("fps") or 30.0)
        source_path = Path(source["path"]) if source.get("path") else None
        is_video = source.get("kind") == "VideoSource"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{run_dir} holds a damaged run record ({exc}); render the run again with "
                         "`samtrack render`") from exc
    if not covered or covered[-1] >= len(names) or set(rles) - set(covered):
        raise InputError(f"{run_dir / RLE_JSON} is inconsistent (its masks and covered frames disagree); "
                         "render the run again with `samtrack render`")
    return Run(run_dir, names, covered, width, height, fps, source_path, is_video,
               dict(sorted(labels.items())), {i: dict(sorted(r.items())) for i, r in rles.items()})


def _needs_transform(path: Path) -> bool:
    """Whether the file's pixels are not the frame as decoded (EXIF rotation), so it cannot be copied."""
    try:
        with Image.open(path) as im:
            return im.getexif().get(_EXIF_ORIENTATION_TAG, 1) not in (0, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}; replace or delete the file") from exc


class FrameFiles:
    """The run's input frames: their file names in a dataset, and writing them there.

    Frames of an image folder keep their file names and are copied byte for byte (unless a JPEG-only
    dataset gets another format, or EXIF rotation must be applied: then they are encoded); video frames
    are decoded and written as `<name>.jpg` (JPEG quality 95).

    Args:
        run: the run whose input this is.
        jpeg: the dataset takes .jpg frames only (DAVIS, YouTube-VOS).
        open_input: open the input now (needed to write frames); otherwise it is opened only when
            available, to learn the frames' file names.
    """

    def __init__(self, run: Run, *, jpeg: bool = False, open_input: bool = True) -> None:
        self.run = run
        self.jpeg = jpeg
        self.source: FrameSource | None = None
        self.note: str | None = None  # why the frames' own file names are not known, when they are not
        path = run.source_path
        try:
            if path is None or not path.exists():
                raise InputError(f"the run's input {path} is missing, and this export holds its frames; put "
                                 "the input back there (or export to coco or cvat without --with-frames)")
            source = open_source(path, fps=run.fps)
            if (len(source), source.width, source.height) != (len(run.names), run.width, run.height):
                source.close()
                raise InputError(f"the run's input {path} has changed: {len(source)} frames of {source.width}x"
                                 f"{source.height} now, {len(run.names)} of {run.width}x{run.height} in the run; "
                                 "restore the input the run was made from")
        except InputError as exc:
            if open_input:
                raise
            if not run.source_is_video:
                self.note = f"{exc.args[0].split(';')[0]}: image file names assume <frame>.jpg"
            return
        self.source = source

    def close(self) -> None:
        if self.source is not None:
            self.source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _copyable(self, index: int) -> Path | None:
        """The image file of frame `index` when the dataset can hold it as it is (format-wise)."""
        if not isinstance(self.source, ImageFolderSource):
            return None
        file = self.source.files[index]
        return None if self.jpeg and file.suffix.lower() not in (".jpg", ".jpeg") else file

    def name(self, index: int) -> str:
        """The file name of frame `index` in the dataset."""
        file = self._copyable(index)
        return file.name if file is not None and not self.jpeg else f"{self.run.names[index]}.jpg"

    def write(self, index: int, folder: Path) -> Path:
        """Write frame `index` into `folder` under `name(index)`; returns its path."""
        assert self.source is not None, "FrameFiles was made without its input"
        target = folder / self.name(index)
        file = self._copyable(index)
        if file is not None and not _needs_transform(file):
            shutil.copyfile(file, target)
        else:  # the format follows the name's suffix (JPEG for video frames)
            Image.fromarray(self.source[index]).save(target, quality=JPEG_QUALITY)
        return target
