"""CVAT for video 1.1 XML: one track per object, a polygon keyframe on every frame where it is seen.

Structure as CVAT documents and writes it (`<annotations>`, `<version>1.1</version>`, a `<meta>`
block with the task's size, mode `interpolation`, labels, segment and `original_size`, then one
`<track id label source>` per object, its id the object's). Each `<polygon frame keyframe outside occluded points z_order>`
is a keyframe, so CVAT interpolates nothing; where the object is absent after being seen (it left,
or the frame is not covered by the run), a keyframe with `outside="1"` ends it there, as CVAT's own
exports do, and a later keyframe brings it back. An object in several parts or with holes is one
polygon (see polygons.py), since a track holds one shape per frame. Masks are not used: CVAT imports
a mask track as its first frame only.

Import: create a task from the same video (or frames) with these labels, then Upload annotations,
format "CVAT 1.1".
"""

from __future__ import annotations

import datetime as _dt
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils

from samtrack.io.export.labels import Categories
from samtrack.io.export.polygons import joined_polygon
from samtrack.io.export.run import Run
from samtrack.io.masks import id_color

VERSION = "1.1"


def _points(polygon: np.ndarray) -> str:
    return ";".join(f"{x:.2f},{y:.2f}" for x, y in polygon)


def _text(parent: ET.Element, tag: str, text: str = "") -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _meta(root: ET.Element, run: Run, categories: Categories) -> None:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(sep=" ", timespec="seconds")
    last = str(len(run.names) - 1)
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for tag, text in (("id", "0"), ("name", run.sequence), ("size", str(len(run.names))), ("mode", "interpolation"),
                      ("overlap", "0"), ("bugtracker", ""), ("created", now), ("updated", now), ("subset", "default"),
                      ("start_frame", "0"), ("stop_frame", last), ("frame_filter", "")):
        _text(task, tag, text)
    labels = ET.SubElement(task, "labels")
    first_object = {categories.index[i]: i for i in reversed(run.object_ids)}
    for k, name in enumerate(categories.names):
        label = ET.SubElement(labels, "label")
        _text(label, "name", name)
        _text(label, "color", "#{:02x}{:02x}{:02x}".format(*id_color(first_object[k])))
        _text(label, "type", "polygon")
        ET.SubElement(label, "attributes")
    segment = ET.SubElement(ET.SubElement(task, "segments"), "segment")
    for tag, text in (("id", "0"), ("start", "0"), ("stop", last), ("url", "")):
        _text(segment, tag, text)
    owner = ET.SubElement(task, "owner")
    _text(owner, "username")
    _text(owner, "email")
    size = ET.SubElement(task, "original_size")
    _text(size, "width", str(run.width))
    _text(size, "height", str(run.height))
    _text(root.find("meta"), "dumped", now)


def cvat_document(run: Run, categories: Categories, on_frame: Callable[[int], None] | None = None) -> ET.ElementTree:
    """The CVAT for video 1.1 document of `run`."""
    root = ET.Element("annotations")
    _text(root, "version", VERSION)
    _meta(root, run, categories)
    shapes: dict[int, dict[int, str]] = {obj_id: {} for obj_id in run.object_ids}  # id -> frame -> points
    for index in run.covered:
        for obj_id, rle in run.rles(index).items():
            polygon = joined_polygon(mask_utils.decode(rle).astype(bool))
            if polygon is not None:
                shapes[obj_id][index] = _points(polygon)
        if on_frame:
            on_frame(index)
    for obj_id in run.object_ids:
        seen = shapes[obj_id]
        if not seen:
            continue
        # CVAT gives track ids no meaning; the object's own id lets readers such as Datumaro keep it
        track = ET.SubElement(root, "track", {"id": str(obj_id), "label": categories.name(obj_id), "source": "auto"})
        frames = sorted(seen)
        for k, frame in enumerate(frames):
            _polygon(track, frame, seen[frame], outside=False)
            after = frame + 1
            if after < len(run.names) and (k + 1 == len(frames) or frames[k + 1] != after):
                _polygon(track, after, seen[frame], outside=True)  # absent (or not covered) from here on
    ET.indent(root, space="  ")
    return ET.ElementTree(root)


def _polygon(track: ET.Element, frame: int, points: str, *, outside: bool) -> None:
    ET.SubElement(track, "polygon", {"frame": str(frame), "keyframe": "1", "outside": str(int(outside)),
                                     "occluded": "0", "points": points, "z_order": "0"})


def write_cvat(run: Run, path: Path, categories: Categories,
               on_frame: Callable[[int], None] | None = None) -> int:
    """Write the XML to `path` (a final or temporary path); returns the number of visible shapes."""
    document = cvat_document(run, categories, on_frame)
    document.write(path, encoding="utf-8", xml_declaration=True)
    return len(document.getroot().findall("./track/polygon[@outside='0']"))
