"""Object masks on frames read from a dataset: a COCO file or a DAVIS-style folder of id-mask PNGs.

    objects = read_annotations("gt/blackswan", names, width, height)   # or "instances.json"
    for obj in objects: obj.frame, obj.obj_id, obj.mask, obj.label

COCO: images are matched to the input's frames by file name (`frames/00012.jpg` -> frame named
`00012`); when no image name matches, by samtrack's `frame_index` field, else by position (images in
id order are frames 0, 1, ...). An annotation's object is its `track_id` (top level or under
`attributes`, as samtrack and CVAT write it), else each annotation is an object of its own; its
label is its category's name. Crowd regions (`iscrowd` 1) are not objects and are skipped. Polygons,
uncompressed and compressed RLE are decoded with pycocotools.

Folder: PNGs named like the frames (`00000.png` for frame `00000`), palette or index PNGs whose
pixel values are object ids (0/255 binary PNGs are object 1). Labels come from a YouTube-VOS
`meta.json` two levels up (`<root>/meta.json` for `<root>/Annotations/<sequence>/`), when there is one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from samtrack.errors import InputError
from samtrack.io.masks import MAX_ID, load_id_mask


@dataclass(frozen=True, eq=False)
class AnnotatedObject:
    """One object's mask on one frame: boolean H×W `mask`, its id in the dataset and its label."""

    frame: int
    obj_id: int
    mask: np.ndarray
    label: str | None = None


def read_annotations(path: str | os.PathLike[str], names: Sequence[str], width: int,
                     height: int) -> list[AnnotatedObject]:
    """Every object mask in the COCO file or annotation folder `path` for an input whose frames are
    called `names` and are `width`×`height`, ordered by frame, then object id (see the module docstring)."""
    p = Path(path)
    if p.is_dir():
        objects = _read_folder(p, list(names), width, height)
    elif p.is_file():
        objects = _read_coco(p, list(names), width, height)
    else:
        raise InputError(f"{p} does not exist; give a COCO .json file or a folder of mask PNGs named like the frames")
    if not objects:
        raise InputError(f"{p} holds no object masks for this input")
    return sorted(objects, key=lambda o: (o.frame, o.obj_id))


# ------------------------------------------------------------------------------------------------ folder

def _read_folder(folder: Path, names: list[str], width: int, height: int) -> list[AnnotatedObject]:
    pngs = sorted(q for q in folder.iterdir() if q.suffix.lower() == ".png" and not q.name.startswith("."))
    if not pngs:
        raise InputError(f"{folder} holds no mask PNGs; give the folder of one sequence's annotations "
                         "(e.g. Annotations/480p/blackswan) or a COCO .json file")
    index = {name: i for i, name in enumerate(names)}
    strangers = [q.name for q in pngs if q.stem not in index]
    if strangers:
        raise InputError(f"{len(strangers)} mask PNGs in {folder} are not named like a frame of the input "
                         f"(first: {', '.join(strangers[:3])}; frames are named like {names[0]}.png); "
                         "give the annotations of this input")
    labels = _meta_labels(folder)
    objects = []
    for png in pngs:
        ids = load_id_mask(png)
        if ids.shape != (height, width):
            raise InputError(f"{png} is {ids.shape[1]}x{ids.shape[0]}, the frames are {width}x{height}")
        present = np.nonzero(np.bincount(ids.ravel(), minlength=MAX_ID + 1)[1:])[0] + 1
        objects += [AnnotatedObject(index[png.stem], int(i), ids == i, labels.get(int(i))) for i in present]
    return objects


def _meta_labels(folder: Path) -> dict[int, str]:
    """Object id -> category from a YouTube-VOS meta.json at <root>/meta.json for <root>/Annotations/<seq>."""
    meta = folder.parent.parent / "meta.json"
    if folder.parent.name != "Annotations" or not meta.is_file():
        return {}
    try:
        objects = json.loads(meta.read_text(encoding="utf-8"))["videos"][folder.name]["objects"]
        return {int(k): str(v["category"]) for k, v in objects.items() if v.get("category")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"cannot read the categories of {folder.name} from {meta} ({exc}); fix or remove it") from exc


# -------------------------------------------------------------------------------------------------- COCO

def _read_coco(file: Path, names: list[str], width: int, height: int) -> list[AnnotatedObject]:
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
        images = {int(im["id"]): im for im in doc["images"]}
        categories = {int(c["id"]): str(c["name"]) for c in doc.get("categories", [])}
        annotations = [a for a in doc["annotations"] if not a.get("iscrowd")]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{file} is not a COCO instance file ({exc}); give a COCO .json file with images, "
                         "annotations and categories, or a folder of mask PNGs") from exc
    frames = _frames_of_images(file, images, names)
    objects: dict[tuple[int, int], AnnotatedObject] = {}
    next_id = 1 + max((i for a in annotations if (i := _track_id(a)) is not None), default=0)
    for n, ann in enumerate(annotations, 1):
        where = f"{file}, annotation {ann.get('id', n)}"
        try:
            image = images[int(ann["image_id"])]
        except (KeyError, ValueError, TypeError):
            raise InputError(f"{where} names an image that {file} does not list") from None
        if (image.get("width"), image.get("height")) not in ((width, height), (None, None)):
            raise InputError(f"{where} is on a {image.get('width')}x{image.get('height')} image, the frames are "
                             f"{width}x{height}; give annotations made on this input")
        obj_id = _track_id(ann)
        if obj_id is None:
            obj_id, next_id = next_id, next_id + 1
        if not 1 <= obj_id <= MAX_ID:
            raise InputError(f"{where}: object id {obj_id} is outside 1..{MAX_ID}")
        mask = _decode(ann.get("segmentation"), height, width, where)
        frame = frames[int(ann["image_id"])]
        label = categories.get(int(ann["category_id"])) if ann.get("category_id") is not None else None
        key = (frame, obj_id)
        if key in objects:  # parts of one object given as separate annotations
            mask = mask | objects[key].mask
        objects[key] = AnnotatedObject(frame, obj_id, mask, label)
    return [o for o in objects.values() if o.mask.any()]


def _track_id(ann: dict) -> int | None:
    value = ann.get("track_id", (ann.get("attributes") or {}).get("track_id"))
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _frames_of_images(file: Path, images: dict[int, dict], names: list[str]) -> dict[int, int]:
    """Image id -> frame index: by file name, else by `frame_index`, else by position in id order."""
    index = {name: i for i, name in enumerate(names)}
    stems = {image_id: Path(str(im.get("file_name", ""))).stem for image_id, im in images.items()}
    matched = {image_id: index[stem] for image_id, stem in stems.items() if stem in index}
    if matched and len(matched) < len(images):
        strangers = [str(images[i].get("file_name")) for i in images if i not in matched]
        raise InputError(f"{len(strangers)} images of {file} are not frames of the input (first: "
                         f"{', '.join(strangers[:3])}; frames are named like {names[0]}); give annotations of "
                         "this input")
    if matched:
        return matched
    if all(isinstance(im.get("frame_index"), int) for im in images.values()):
        frames = {image_id: im["frame_index"] for image_id, im in images.items()}
    else:
        frames = {image_id: k for k, image_id in enumerate(sorted(images))}
    outside = [f for f in frames.values() if not 0 <= f < len(names)]
    if outside:
        raise InputError(f"{file} has images for frame {max(outside)}, but the input has {len(names)} frames; "
                         "give annotations of this input")
    return frames


def _decode(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as a boolean mask."""
    try:
        if isinstance(segmentation, list):
            polygons = [p for p in segmentation if len(p) >= 6]
            if not polygons:
                return np.zeros((height, width), dtype=bool)
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation, dict):
            counts = segmentation["counts"]
            rle = {"size": [int(v) for v in segmentation["size"]],
                   "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
            if rle["size"] != [height, width]:
                raise ValueError(f"its mask is {rle['size'][1]}x{rle['size'][0]}")
        else:
            raise TypeError("it has no segmentation")
        return mask_utils.decode(rle).astype(bool)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where} cannot be read as a mask ({exc}); give polygons or RLE of the frame's size") from exc
