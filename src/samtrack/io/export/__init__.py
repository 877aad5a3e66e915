"""A finished run in the formats annotation tools and trainers read.

    summary = samtrack.export_run("runs/clip", "coco", "clip.json")          # COCO, RLE masks
    export_run("runs/clip", "coco", "data/clip.json", polygons=True, with_frames=True)
    export_run("runs/clip", "yolo", "datasets/clip", classes={1: "swan", 2: "duck"})
    export_run("runs/clip", "cvat", "clip.xml")
    export_run("runs/clip", "davis", "vos")                                  # or "ytvos"
    print(summary.line())                                                    # one sentence; .to_dict() for JSON

Formats (`FORMATS`): `coco` (one .json file; `with_frames` writes an `images/` folder beside it),
`yolo` (a folder: images/, labels/, data.yaml), `cvat` (one .xml file), `davis` and `ytvos` (a folder:
JPEGImages/<sequence>/, Annotations/<sequence>/, and meta.json for YouTube-VOS). Each module says
what its format holds. Categories are the objects' labels (`classes` maps ids to other names;
unlabelled objects share the category "object"). Only the frames the run covers are exported; the
summary names those left out.

The run must be finished (its outputs written) and not being written: the export reads it under a
shared lock. An existing output is replaced only with `force`. Everything is written under temporary
names and moved into place when complete, so an interrupted export leaves no half file or folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from samtrack.errors import InputError
from samtrack.io.export import vos, yolo
from samtrack.io.export.coco import write_coco
from samtrack.io.export.cvat import write_cvat
from samtrack.io.export.labels import DEFAULT_CATEGORY, Categories, parse_classes
from samtrack.io.export.run import FrameFiles, Run, check_run_dir, read_run
from samtrack.io.export.target import check_target, staged
from samtrack.io.export.vos import write_vos
from samtrack.io.export.yolo import write_yolo
from samtrack.io.rundir import reading_run

FORMATS = ("coco", "yolo", "cvat", "davis", "ytvos")
TITLES = {"coco": "COCO instance segmentation", "yolo": "YOLO segmentation", "cvat": "CVAT for video 1.1",
          "davis": "DAVIS", "ytvos": "YouTube-VOS"}
FILE_SUFFIX = {"coco": ".json", "cvat": ".xml"}  # the other formats are folders
COCO_IMAGES = "images"

__all__ = ["DEFAULT_CATEGORY", "FORMATS", "ExportSummary", "Run", "default_name", "export_run", "parse_classes",
           "read_run"]


def default_name(fmt: str) -> str:
    """A file or folder name for an export in `fmt` ("coco.json", "cvat.xml", "yolo", ...)."""
    return fmt + FILE_SUFFIX.get(fmt, "")


def _span(ranges: list[list[int]]) -> str:
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges)


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: `line()` says it in one sentence, `to_dict()` for JSON."""

    format: str
    out: Path
    frames: int  # covered frames exported
    objects: int  # objects with at least one mask
    masks: int  # object masks (annotations, label lines, visible shapes) written
    categories: tuple[str, ...]
    uncovered: tuple[tuple[int, int], ...]  # input frames the run does not cover, as [first, last] ranges
    images: Path | None  # the folder the frames were written to, if they were
    polygons: bool
    notes: tuple[str, ...] = ()

    def line(self) -> str:
        kind = TITLES[self.format] + (" (polygons)" if self.polygons else " (RLE)" if self.format == "coco" else "")
        cats = f"; categories {', '.join(self.categories)}" if self.categories else ""
        images = f", frames in {self.images}" if self.images is not None else ""
        text = (f"exported {self.frames} frames ({self.objects} objects, {self.masks} masks{cats}) as {kind} "
                f"to {self.out}{images}")
        if self.uncovered:
            ranges = [list(r) for r in self.uncovered]
            if sum(b - a + 1 for a, b in ranges) > 1:
                text += f"; frames {_span(ranges)} are not covered by the run and were left out"
            else:
                text += f"; frame {_span(ranges)} is not covered by the run and was left out"
        return "; ".join([text, *self.notes])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(out=str(self.out), images=None if self.images is None else str(self.images),
                    categories=list(self.categories), uncovered=[list(r) for r in self.uncovered],
                    notes=list(self.notes))
        return data


def _images_in(out: Path, fmt: str, sequence: str) -> Path | None:
    """Where a folder format keeps the frames."""
    if fmt == "yolo":
        return out / yolo.IMAGES
    return out / vos.IMAGES / sequence if fmt in ("davis", "ytvos") else None


def _check_options(fmt: str, out: Path, *, polygons: bool, with_frames: bool) -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    suffix = FILE_SUFFIX.get(fmt)
    if suffix and out.suffix.lower() != suffix:
        raise InputError(f"a {fmt} export is one {suffix} file; give --out a name ending in {suffix}, e.g. "
                         f"{out.with_suffix(suffix) if out.name else default_name(fmt)}")
    if polygons and fmt in ("davis", "ytvos"):
        raise InputError(f"{fmt} holds masks as PNGs; --polygons applies to coco (yolo and cvat always hold polygons)")
    if with_frames and fmt == "cvat":
        raise InputError("a CVAT task takes its frames from its own video; --with-frames applies to coco "
                         "(yolo, davis and ytvos always hold the frames)")


def export_run(run_dir: str | Path, fmt: str, out: str | Path, *, polygons: bool = False, with_frames: bool = False,
               classes: Mapping[int, str] | str | None = None, force: bool = False,
               progress: bool = False) -> ExportSummary:
    """Export the finished run in `run_dir` as `fmt` to `out` (see the module docstring).

    Args:
        run_dir: the run directory (`samtrack track` / `render` / the app's --out).
        fmt: one of `FORMATS`.
        out: a .json file (coco), a .xml file (cvat), or a folder (yolo, davis, ytvos).
        polygons: coco only: polygons (OpenCV outlines) instead of RLE masks.
        with_frames: coco only: also write the frames to an `images/` folder beside the JSON.
        classes: object id -> class name, overriding labels (or a spec for `parse_classes`).
        force: replace an existing `out` (and, with `with_frames`, `images/`).
        progress: show a progress bar.

    Raises:
        InputError: not a run, an unfinished run, bad options or classes, a missing input where
            frames are needed. OutputError: the run is being written, or `out` exists (without `force`)
            or cannot be written. Nothing is written then.
    """
    run_dir, out = Path(run_dir), Path(out)
    _check_options(fmt, out, polygons=polygons, with_frames=with_frames)
    classes = parse_classes(classes) if isinstance(classes, str) else dict(classes or {})
    check_run_dir(run_dir)
    folder = fmt not in FILE_SUFFIX
    images_dir = out.parent / COCO_IMAGES if fmt == "coco" and with_frames else None
    check_target(out, folder=folder, force=force, run_dir=run_dir)
    if images_dir is not None:
        check_target(images_dir, folder=True, force=force, run_dir=run_dir)
    with reading_run(run_dir):
        run = read_run(run_dir)
        categories = Categories.of(run, classes)
        needs_frames = fmt in ("yolo", "davis", "ytvos") or images_dir is not None
        with FrameFiles(run, jpeg=fmt in ("davis", "ytvos"), open_input=needs_frames) as frames, \
                tqdm(total=len(run.covered), desc=f"export {fmt}", unit="frame", disable=not progress) as bar, \
                ExitStack() as stack:
            target = stack.enter_context(staged(out, folder=folder))
            # entered last, so it is moved into place first and the JSON never names missing frames
            images_tmp = stack.enter_context(staged(images_dir, folder=True)) if images_dir is not None else None

            def on_frame(index: int) -> None:
                if images_tmp is not None:
                    frames.write(index, images_tmp)
                bar.update()

            if fmt == "coco":
                masks = write_coco(run, target, frames, categories, polygons=polygons, on_frame=on_frame)
            elif fmt == "yolo":
                masks = write_yolo(run, target, frames, categories, on_frame=on_frame)
            elif fmt == "cvat":
                masks = write_cvat(run, target, categories, on_frame=on_frame)
            else:
                masks = write_vos(run, target, frames, categories if fmt == "ytvos" else None, on_frame=on_frame)
            notes = (frames.note,) if frames.note else ()
    return ExportSummary(
        format=fmt, out=out, frames=len(run.covered),
        objects=sum(1 for i in run.object_ids if run.frames_of(i)), masks=masks,
        categories=() if fmt == "davis" else categories.names,
        uncovered=tuple((a, b) for a, b in run.uncovered),
        images=images_dir if images_dir is not None else _images_in(out, fmt, run.sequence),
        polygons=polygons or fmt in ("yolo", "cvat"), notes=notes)

