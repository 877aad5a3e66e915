"""New-object discovery on key frames (SAM-Track's `find_new_objs`, with fresh ids)."""

from __future__ import annotations

import numpy as np


def find_new_objects(tracked: np.ndarray, segments: np.ndarray, next_id: int, *, min_new_obj_iou: float,
                     min_area: int, max_obj_num: int) -> np.ndarray:
    """Segments that are not yet tracked, numbered from `next_id` upwards.

    A segment becomes a new object when the part of it outside every tracked object is at least
    `min_new_obj_iou` of its own area and at least `min_area` pixels, while ids stay <= `max_obj_num`.
    Unlike SAM-Track (which numbers from the current largest id, so its first new object reuses an
    existing id), new ids are always fresh: `next_id` must be larger than every id ever used.
    Returns a uint8 mask holding only the new objects (0 elsewhere).
    """
    outside = np.where(tracked == 0, segments, 0)
    seg_area = np.bincount(segments.ravel(), minlength=256)
    new_area = np.bincount(outside.ravel(), minlength=256)
    lut = np.zeros(256, dtype=np.uint8)
    obj_id = next_id
    for seg_id in np.flatnonzero(new_area[1:]) + 1:  # segment ids in increasing order, as SAM-Track
        if obj_id > max_obj_num:
            break
        if new_area[seg_id] < min_area or new_area[seg_id] < min_new_obj_iou * seg_area[seg_id]:
            continue
        lut[seg_id] = obj_id
        obj_id += 1
    return lut[outside]
