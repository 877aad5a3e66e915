"""The detector factory: text -> objects on one frame. Grounding DINO (boxes, which the segmenter then
cuts, SAM-Track's text path) or SAM 3 and its lite-text variants (instance masks straight away).

Every detector has ``detect(frame, caption, **options) -> list[Detection]`` (sorted by score, best
first) and ``options``: the names of the settings ``detect`` reads (see
:class:`samtrack.tracking.settings.DetectorSettings`).
"""

from __future__ import annotations

from typing import Any

from samtrack.models.sam3.loading import is_sam3


def makes_masks(name_or_path: str) -> bool:
    """Whether the detector cuts its objects itself (SAM 3), so text prompts need no segmenter."""
    return is_sam3(name_or_path)


def load_detector(name_or_path: str, device: str = "auto", precision: str = "auto") -> Any:
    """A registry name, hub id or local directory of a text detector, loaded."""
    if is_sam3(name_or_path):
        from samtrack.models.sam3.detector import Sam3Detector

        return Sam3Detector.load(name_or_path, device=device, precision=precision)
    from samtrack.models.grounding import Detector

    return Detector.load(name_or_path, device=device)
