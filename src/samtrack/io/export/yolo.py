"""Ultralytics YOLO segmentation: `images/`, `labels/` and `data.yaml`, ready for `yolo segment train`.

`labels/<frame>.txt` holds one line per object on the frame: its class index, then its outline as
x y pairs normalised by the frame's width and height. Ultralytics takes one polygon per object, so an
object in several parts is one polygon through all of them, joined by zero-width bridges as their own
COCO converter joins parts (`merge_multi_segment`); holes are joined in the same way, and Ultralytics'
rasteriser (OpenCV `fillPoly`) draws them as holes. A covered frame without objects gets an empty label
file (a background image). `data.yaml` names the classes; it has no `path:` so Ultralytics resolves
`images` beside the file itself, and `train` and `val` both name every frame (split them as you need).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import yaml

from samtrack.io.export.labels import Categories
from samtrack.io.export.polygons import joined_polygon
from samtrack.io.export.run import FrameFiles, Run

IMAGES, LABELS, DATA_YAML = "images", "labels", "data.yaml"


def label_lines(run: Run, index: int, categories: Categories) -> list[str]:
    """The label file lines of frame `index`: `class x1 y1 x2 y2 ...`, coordinates in 0..1."""
    lines = []
    scale = np.array([run.width, run.height], dtype=np.float64)
    for obj_id, rle in run.rles(index).items():
        polygon = joined_polygon(mask_utils.decode(rle).astype(bool))
        if polygon is None:
            continue
        coords = np.clip(polygon / scale, 0.0, 1.0).ravel()
        lines.append(f"{categories.index[obj_id]} " + " ".join(f"{v:.6f}" for v in coords))
    return lines


def write_yolo(run: Run, folder: Path, frames: FrameFiles, categories: Categories,
               on_frame: Callable[[int], None] | None = None) -> int:
    """Write the dataset into the (new, empty) `folder`; returns the number of label lines."""
    images, labels = folder / IMAGES, folder / LABELS
    images.mkdir()
    labels.mkdir()
    count = 0
    for index in run.covered:
        image = frames.write(index, images)
        lines = label_lines(run, index, categories)
        (labels / f"{image.stem}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        count += len(lines)
        if on_frame:
            on_frame(index)
    doc = {"train": IMAGES, "val": IMAGES, "names": dict(enumerate(categories.names))}
    (folder / DATA_YAML).write_text(f"# samtrack export of {run.path.name} ({run.sequence})\n"
                                    + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return count
