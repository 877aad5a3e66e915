"""The Outputs tab's dataset exports (COCO, YOLO, CVAT, DAVIS, YouTube-VOS) of a tab's finished run, as
files to download: one .json or .xml file, or a folder format zipped.

The tab's session holds its run directory's writer lock while it is open, and an export reads a run
under a shared lock, so the export reads a snapshot: a copy of the run records `finalize` wrote
(run.json, masks_rle.json, objects.json), which name the input the frames come from.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from samtrack.errors import InputError
from samtrack.io.export import FORMATS, TITLES, default_name, export_run
from samtrack.io.outputs import OBJECTS_JSON, RLE_JSON, RUN_JSON

CHOICES = [(TITLES[fmt], fmt) for fmt in FORMATS]  # (label, format) for the format picker


def export_files(run_dir: Path, formats: Iterable[str], out: Path) -> tuple[list[Path], list[str]]:
    """Export the finalised run in `run_dir` in each of `formats` under `out` (emptied first).
    Returns the files to download and one summary line per export."""
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError(f"unknown export format {unknown[0]!r}; choose among {', '.join(FORMATS)}")
    shutil.rmtree(out, ignore_errors=True)
    snapshot = out / "run"
    snapshot.mkdir(parents=True)
    for name in (RUN_JSON, RLE_JSON, OBJECTS_JSON):
        shutil.copy2(run_dir / name, snapshot / name)
    files, lines = [], []
    for fmt in formats:
        target = out / default_name(fmt)
        summary = export_run(snapshot, fmt, target, force=True)
        if target.is_dir():
            archive = Path(shutil.make_archive(str(out / fmt), "zip", root_dir=out, base_dir=target.name))
            shutil.rmtree(target)
            target = archive
        files.append(target)
        lines.append(f"{TITLES[fmt]}: {summary.frames} frames, {summary.objects} objects, {summary.masks} masks "
                     f"({target.name})")
    shutil.rmtree(snapshot)
    return files, lines
