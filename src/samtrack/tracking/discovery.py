"""Key-frame discovery: candidate segments from segment-everything or text categories (one step for
the interactive prompts and the key frames of a pass alike), and which of them are new objects
(SAM-Track's `find_new_objs`, with fresh ids)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from samtrack.tracking.modelset import ModelSet
    from samtrack.tracking.settings import Settings


def find_new_objects(tracked: np.ndarray, segments: np.ndarray, next_id: int, *, min_new_obj_iou: float,
                     min_area: int, max_obj_num: int, max_new_share: float | None = None) -> np.ndarray:
    """Segments that are not yet tracked, numbered from `next_id` upwards.

    A segment becomes a new object when the part of it outside every tracked object is at least
    `min_new_obj_iou` of its own area and at least `min_area` pixels, while ids stay <= `max_obj_num`.
    Unlike SAM-Track (which numbers from the current largest id, so its first new object reuses an
    existing id), new ids are always fresh: `next_id` must be larger than every id ever used.
    With `max_new_share`, new objects that together cover more than that share of the frame are all
    dropped (SAM-Track's guard in text-category mode, :data:`MAX_NEW_SHARE`).
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
    new = lut[outside]
    if max_new_share is not None and np.count_nonzero(new) > max_new_share * new.size:
        new[:] = 0
    return new


# SAM-Track's guard in text-category automatic mode: a key frame whose new objects cover more than
# this share of the frame adds none of them (a detection spread over the background).
MAX_NEW_SHARE = 0.4


def key_frame_segments(frame: np.ndarray, index: int, settings: Settings, models: ModelSet,
                       categories: str | None = None,
                       sounds: dict[str, float] | None = None) -> tuple[np.ndarray, dict[int, dict] | None]:
    """THE key-frame step: candidate segments on one frame, as an id mask, and per segment id the label and
    prompt record of the object it would become (None: segment-everything objects).

    Without `categories`, segment everything (the segmenter's automatic mask generator with SAM-Track's
    settings). With `categories` ("swan. duck"), every instance the detector finds: its mask when the
    detector makes masks (SAM 3), else the segmenter's mask for its box (Grounding DINO + SAM). `sounds`
    (label -> probability) records that the categories were heard in the soundtrack. Which of them
    become new objects is :func:`find_new_objects`'s decision.
    """
    if not categories:
        return models.segmenter.everything(frame, **settings.everything_args()), None
    detector = models.detector
    options = {name: getattr(settings.detector, name) for name in detector.options}
    detections = detector.detect(frame, categories, **options)
    segments = np.zeros(frame.shape[:2], dtype=np.uint8)
    info: dict[int, dict] = {}
    # Painted from the least to the most confident, so the best detection keeps overlapping pixels.
    for seg_id, det in reversed(list(enumerate(detections[:255], 1))):
        mask = det.mask if det.mask is not None else models.segmenter.box(frame, det.box)
        segments[mask] = seg_id
        prompt = {"kind": "audio" if sounds else "text", "frame": index, "caption": categories,
                  "box": [round(v, 2) for v in det.box], "score": round(det.score, 4)}
        if sounds:
            prompt["sounds"] = {label: round(p, 4) for label, p in sounds.items()}
        info[seg_id] = {"label": det.phrase or categories.strip(" ."), "prompt": prompt}
    return segments, info


def nothing_found(index: int, captions: list[str], settings: Settings) -> str:
    """What to say when the text prompts of a pass's first frame found no object to track."""
    from samtrack.models.detectors import makes_masks

    d = settings.detector
    threshold = (f"--score-threshold {d.score_threshold}" if makes_masks(d.model)
                 else f"--box-threshold {d.box_threshold}")
    named = " and ".join(repr(c) for c in captions) or "the prompts"
    return (f"nothing to track: {named} found no object on frame {index} (detector {d.model}, {threshold}); "
            "lower the threshold, name the objects differently, or prompt another frame")
