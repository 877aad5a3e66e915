"""COCO instance segmentation: one dataset of the run's covered frames.

`images` lists every covered frame (id = frame index + 1, `file_name`, `width`, `height`, and
`frame_index` counted from 0), `annotations` one entry per object and frame with its `segmentation`
(compressed RLE from pycocotools, or polygons), `bbox` [x, y, w, h], `area` (pixels of the mask),
`iscrowd` 0, the object's id as `track_id` and as `attributes.track_id` (where CVAT's COCO importer
reads it), and `categories` the objects' classes. Polygons: one per part of the object; a part's holes
are joined into its polygon by zero-width bridges (see polygons.py), which pycocotools fills as holes.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from samtrack import __version__
from samtrack.io.export.labels import Categories
from samtrack.io.export.polygons import part_polygons
from samtrack.io.export.run import FrameFiles, Run


def coco_dataset(run: Run, frames: FrameFiles, categories: Categories, *, polygons: bool = False,
                 on_frame: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The COCO dataset of `run` as a JSON-ready dict (`on_frame(index)` after each frame)."""
    images, annotations = [], []
    for index in run.covered:
        image_id = index + 1
        images.append({"id": image_id, "file_name": frames.name(index), "width": run.width, "height": run.height,
                       "frame_index": index})
        rles = run.rles(index)
        if rles:
            ids = list(rles)
            boxes = mask_utils.toBbox([rles[i] for i in ids])
            areas = mask_utils.area([rles[i] for i in ids])
            for obj_id, box, area in zip(ids, boxes, areas):
                rle = rles[obj_id]
                if polygons:
                    mask = mask_utils.decode(rle).astype(bool)
                    segmentation: Any = [np.round(p, 2).ravel().tolist() for p in part_polygons(mask)]
                else:
                    segmentation = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id,
                    "category_id": categories.index[obj_id] + 1, "segmentation": segmentation,
                    "area": int(area), "bbox": [float(v) for v in box], "iscrowd": 0,
                    "track_id": obj_id, "attributes": {"track_id": obj_id},
                })
        if on_frame:
            on_frame(index)
    return {
        "info": {"description": f"samtrack export of {run.path.name} ({run.sequence})",
                 "version": __version__, "year": _dt.date.today().year,
                 "date_created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name, "supercategory": ""} for k, name in enumerate(categories.names)],
    }


def write_coco(run: Run, path: Path, frames: FrameFiles, categories: Categories, *, polygons: bool = False,
               on_frame: Callable[[int], None] | None = None) -> int:
    """Write the dataset JSON to `path` (a final or temporary path); returns the annotation count."""
    doc = coco_dataset(run, frames, categories, polygons=polygons, on_frame=on_frame)
    path.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    return len(doc["annotations"])
