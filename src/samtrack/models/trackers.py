"""The tracker factory: a registry name, hub id, checkpoint file or directory -> the backend's weights,
and trackers made from them.

Backends: DeAOT/AOT (:mod:`samtrack.models.deaot`, the official ``.pth`` releases), the SAM 2
family through transformers (:mod:`samtrack.models.sam2video`: SAM 2.1, EdgeTAM) and SAM 3's tracker
(:mod:`samtrack.models.sam3`, on the SAM 2 family tracker). A backend plugs in
with one entry in :data:`BACKENDS` (how to recognise its models, how to load its weights) and its
names in :mod:`samtrack.models.registry`; nothing above the model layer changes. A backend's modules,
and what they import (transformers for the SAM 2 family), load only when one of its trackers does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from samtrack.errors import ModelError
from samtrack.models.registry import config_model_type, find_spec
from samtrack.models.tracker import MemoryOptions, Tracker, TrackerWeights


@dataclass(frozen=True)
class Backend:
    """How to recognise one backend's models and where its loader lives."""

    name: str
    families: tuple[str, ...]  # registry families it serves
    model_types: tuple[str, ...]  # config.json model_type of directories it loads
    loader: str  # "module:function(name_or_path, checkpoint, device, precision) -> TrackerWeights"
    # Trackers that also detect text categories and track them by themselves on every frame (SAM 3):
    # "module:function(name, checkpoint) -> bool" (can this checkpoint?) and its weights' loader.
    concept: tuple[str, str] | None = None

    def load(self, name: str, checkpoint: str | Path | None, device: str, precision: str) -> TrackerWeights:
        return _function(self.loader)(name, checkpoint, device, precision)


def _function(spec: str) -> Callable[..., Any]:
    module, function = spec.split(":")
    return getattr(import_module(module), function)


BACKENDS: tuple[Backend, ...] = (
    Backend("sam3", ("sam3",), ("sam3_video", "sam3_tracker_video"),
            "samtrack.models.sam3.loading:load_sam3_tracker_weights",
            concept=("samtrack.models.sam3.loading:serves_concept",
                     "samtrack.models.sam3.loading:load_sam3_concept_weights")),
    Backend("sam2video", ("sam2", "edgetam"), ("sam2_video", "sam2", "edgetam_video", "edgetam"),
            "samtrack.models.sam2video.loading:load_sam2_video_weights"),
    Backend("deaot", ("deaot", "aot"), (), "samtrack.models.deaot.tracker:load_deaot_weights"),
)
_DEFAULT = BACKENDS[-1]  # a .pth file, or a DeAOT/AOT variant name


def _directory_backend(path: str | Path) -> Backend | None:
    p = Path(str(path)).expanduser()
    if not p.is_dir():
        return None
    model_type = config_model_type(p)
    return next((b for b in BACKENDS if model_type in b.model_types), None)


def backend_of(name: str, checkpoint: str | Path | None = None) -> Backend:
    """The backend of a tracker name (registry name, alias or hub id) or of its checkpoint directory."""
    spec = find_spec(str(name), "tracker")
    if spec is not None:
        return next(b for b in BACKENDS if spec.family in b.families)
    for candidate in (checkpoint, name):
        found = _directory_backend(candidate) if candidate is not None else None
        if found is not None:
            return found
    return _DEFAULT


def load_tracker_weights(name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                         precision: str = "auto") -> TrackerWeights:
    """Load a tracker's weights once, to make any number of trackers from (see :func:`load_tracker`)."""
    return backend_of(name, checkpoint).load(name, checkpoint, device, precision)


def tracks_concepts(name: str, checkpoint: str | Path | None = None) -> bool:
    """Whether this tracker can detect text categories and track them by itself on every frame (SAM 3's
    concept tracking), so automatic mode by text needs no detector on key frames."""
    backend = backend_of(name, checkpoint)
    return backend.concept is not None and _function(backend.concept[0])(str(checkpoint or name))


def load_concept_weights(name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                         precision: str = "auto") -> Any:
    """The weights of a tracker's concept mode (see :func:`tracks_concepts`), to make concept trackers from."""
    backend = backend_of(name, checkpoint)
    if backend.concept is None:
        raise ModelError(f"the tracker {name!r} does not detect and track text categories by itself; use SAM 3 "
                         "(--tracker sam3)")
    return _function(backend.concept[1])(name, checkpoint, device, precision)


def load_tracker(name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                 long_term_mem_gap: int = 9999, max_len_long_term: int = 9999,
                 num_memory_frames: int | None = None, max_conditioning_frames: int = 4,
                 precision: str = "auto") -> Tracker:
    """Any tracker behind the :class:`~samtrack.models.tracker.Tracker` protocol.

    Args:
        name: ``r50-deaotl``, ``deaot-t``, ``swinb-deaotl``, ``aot-*`` ... (DeAOT/AOT), or
            ``sam2.1-tiny|sam2.1-small|sam2.1-base-plus|sam2.1-large|edgetam``, a hub id, or a directory
            holding such a model (SAM 2.1 / EdgeTAM).
        checkpoint: DeAOT: the official ``.pth`` file; SAM 2.1 / EdgeTAM: a directory saved with
            ``save_pretrained``. None: the registry's cached copy (downloaded on first use).
        device: torch device (``auto`` picks cuda, mps, then cpu).
        long_term_mem_gap, max_len_long_term: DeAOT's memory knobs.
        num_memory_frames, max_conditioning_frames: SAM 2.1 / EdgeTAM's memory knobs.
        precision: ``fp32`` (exact), ``bf16`` or ``fp16`` autocast; ``auto`` (default) follows SAM-Track,
            which runs under fp16 autocast on GPUs: fp16 on CUDA, bf16 on CPUs where bf16 is faster
            (``models.common.native_bf16``), fp32 otherwise. The tracker's ``precision`` says what runs.
    """
    weights = load_tracker_weights(name, checkpoint, device, precision)
    return weights.tracker(MemoryOptions(long_term_mem_gap, max_len_long_term, num_memory_frames,
                                         max_conditioning_frames))
