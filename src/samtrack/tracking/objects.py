"""The object registry of a session: stable ids, labels, where and how each object was added."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from samtrack.errors import InputError
from samtrack.tracking.discovery import find_new_objects

MAX_LABEL = 200  # characters: a name for an object, not a document (every entry point gets this cap)


def check_label(label: str) -> str:
    """`label`, or InputError when it is longer than `MAX_LABEL` characters."""
    if len(label) > MAX_LABEL:
        raise InputError(f"a label is at most {MAX_LABEL} characters, this one has {len(label)}; shorten it")
    return label


@dataclass
class TrackedObject:
    """One object of the session, under a stable id."""

    id: int
    label: str
    frame: int  # where it was added
    prompt: dict  # the prompt that made it (kind + parameters)


class ObjectRegistry:
    """Objects by id. Ids are never reused: a new object always gets an id above every id used so far
    (SAM-Track reuses the largest id, which can merge a new segment into a tracked object)."""

    def __init__(self, max_obj_num: int = 255) -> None:
        self.max_obj_num = max_obj_num
        self.objects: dict[int, TrackedObject] = {}
        self.next_id = 1

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self.objects

    def __iter__(self) -> Iterator[int]:
        return iter(self.objects)

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, obj_id: int) -> TrackedObject:
        return self.objects[obj_id]

    def check(self, obj_id: int) -> None:
        if obj_id not in self.objects:
            raise InputError(f"unknown object id {obj_id}; known ids: {sorted(self.objects) or 'none'}")

    def check_room(self) -> None:
        if self.next_id > self.max_obj_num:
            raise InputError(f"too many objects: max_obj_num is {self.max_obj_num}")

    def add(self, label: str | None, frame: int, prompt: dict) -> int:
        """Register a new object; returns its fresh id."""
        self.check_room()
        if label:
            check_label(label)
        obj_id = self.next_id
        self.next_id += 1
        self.objects[obj_id] = TrackedObject(obj_id, label or f"object {obj_id}", frame, prompt)
        return obj_id

    def add_segments(self, ids: np.ndarray, segments: np.ndarray, frame: int, *, min_new_obj_iou: float,
                     min_area: int, info: dict[int, dict] | None = None,
                     max_new_share: float | None = None) -> list[int]:
        """Paint the segments not yet tracked into `ids` (in place) as fresh objects; return their ids.

        `info` maps a segment id to the label and prompt of the object it becomes (default: a
        segment-everything object); `max_new_share`: see :func:`find_new_objects`."""
        for meta in (info or {}).values():
            if meta.get("label"):
                check_label(meta["label"])
        new = find_new_objects(ids, segments, self.next_id, min_new_obj_iou=min_new_obj_iou, min_area=min_area,
                               max_obj_num=self.max_obj_num, max_new_share=max_new_share)
        inside = new > 0
        pairs = np.unique(np.stack([new[inside], segments[inside]]), axis=1).T  # (object id, segment id)
        for obj_id, seg_id in pairs.tolist():
            meta = (info or {}).get(seg_id, {})
            self.objects[obj_id] = TrackedObject(obj_id, meta.get("label") or f"object {obj_id}", frame,
                                                 meta.get("prompt") or {"kind": "everything", "frame": frame})
        added = [int(p) for p in pairs[:, 0]]
        if added:
            self.next_id = max(added) + 1
            np.copyto(ids, new, where=inside)
        return added

    def remove(self, obj_id: int) -> None:
        self.check(obj_id)
        del self.objects[obj_id]

    def relabel(self, obj_id: int, label: str) -> None:
        self.check(obj_id)
        self.objects[obj_id].label = check_label(label)

    def forget_after(self, frame: int, frames: set[int] | None = None) -> None:
        """Drop the objects added after `frame` (only those added on one of `frames`, when given): a
        resumed pass finds them again. Ids restart above the highest kept one."""
        for obj_id in [o.id for o in self.objects.values() if o.frame > frame and (frames is None or o.frame in frames)]:
            del self.objects[obj_id]
        self.next_id = max(self.objects, default=0) + 1

    # ----------------------------------------------------------------- (de)serialisation, snapshots
    def snapshot(self) -> tuple[dict[int, TrackedObject], int]:
        return copy.deepcopy(self.objects), self.next_id

    def restore(self, snapshot: tuple[dict[int, TrackedObject], int]) -> None:
        objects, next_id = snapshot
        self.objects, self.next_id = copy.deepcopy(objects), next_id

    def to_dict(self) -> dict:
        return {"objects": {str(k): asdict(v) for k, v in self.objects.items()}, "next_id": self.next_id}

    def load_dict(self, data: dict) -> None:
        """Load what :meth:`to_dict` wrote (a session file); InputError when it is not one."""
        try:
            objects = {int(k): TrackedObject(**v) for k, v in data["objects"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"not a samtrack object registry ({exc})") from exc
        self.objects = objects
        self.next_id = int(data.get("next_id", max(objects, default=0) + 1))

    def summary(self) -> dict[int, dict]:
        """What objects.json records per object."""
        return {k: {"label": o.label, "prompt": o.prompt, "added_on_frame": o.frame} for k, o in self.objects.items()}
