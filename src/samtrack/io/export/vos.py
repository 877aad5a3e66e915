"""Video object segmentation layouts: DAVIS and YouTube-VOS.

    <out>/JPEGImages/<sequence>/<frame>.jpg     the covered frames
    <out>/Annotations/<sequence>/<frame>.png    their id masks, DAVIS palette PNGs (ids as in the run)
    <out>/meta.json                              YouTube-VOS only: each object's category and frames

`<sequence>` is the input's name (the video file's stem or the frame folder's name). The result opens
with `samtrack track <out>/JPEGImages/<sequence>`, scores with `samtrack eval`, and reads with the
DAVIS and YouTube-VOS loaders.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from samtrack.io.export.labels import Categories
from samtrack.io.export.run import FrameFiles, Run
from samtrack.io.masks import save_id_mask

IMAGES, ANNOTATIONS, META_JSON = "JPEGImages", "Annotations", "meta.json"


def write_vos(run: Run, folder: Path, frames: FrameFiles, categories: Categories | None,
              on_frame: Callable[[int], None] | None = None) -> int:
    """Write the sequence into the (new, empty) `folder`, with meta.json when `categories` are given
    (YouTube-VOS); returns the number of object masks written."""
    images, annotations = folder / IMAGES / run.sequence, folder / ANNOTATIONS / run.sequence
    images.mkdir(parents=True)
    annotations.mkdir(parents=True)
    count = 0
    for index in run.covered:
        image = frames.write(index, images)
        save_id_mask(annotations / f"{image.stem}.png", run.id_mask(index))
        count += len(run.rles(index))
        if on_frame:
            on_frame(index)
    if categories is not None:
        objects = {str(obj_id): {"category": categories.name(obj_id),
                                 "frames": [run.names[i] for i in run.frames_of(obj_id)]}
                   for obj_id in run.object_ids if run.frames_of(obj_id)}
        (folder / META_JSON).write_text(json.dumps({"videos": {run.sequence: {"objects": objects}}}, indent=1),
                                        encoding="utf-8")
    return count
