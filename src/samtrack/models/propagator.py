"""The propagator protocol every tracker backend implements, and `load_propagator` for all of them.

Backends: DeAOT/AOT (:mod:`samtrack.models.deaot`) and SAM 2.1 / EdgeTAM
(:mod:`samtrack.models.sam2video`). Each backend's modules, and what they import (transformers for
SAM 2.1 / EdgeTAM), load only when a tracker of that backend is loaded.

Weights are apart from per-video state: :func:`load_tracker_weights` loads a model once, and
:meth:`TrackerWeights.propagator` makes any number of independent propagators over those weights
(one per video or per user), each with its own memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from samtrack.models.registry import find_spec

# config.json model_type of the SAM 2.1 / EdgeTAM checkpoints (image or video flavour: the hub's
# checkpoints hold the video model's weights whichever type their config names)
SAM2_VIDEO_TYPES = ("sam2_video", "sam2", "edgetam_video", "edgetam")
_SAM2_FAMILIES = ("sam2", "edgetam")


@runtime_checkable
class Propagator(Protocol):
    """Carries every object's mask, under its integer id, from frame to frame of one video.

    Frames are RGB ``uint8`` ``H x W x 3``, id masks ``uint8`` ``H x W`` (0 = background, 1..255
    objects). Frames are counted in the order they are fed: feeding them in reverse propagates
    backward. Contract, for every backend:

    - ``add_reference(frame, id_mask)``: the mask is the truth on this frame for every object in it.
      Ids not seen before join as new objects (ids keep their meaning; they need not be consecutive).
      An object already tracked is re-referenced: the given mask replaces the tracker's own belief on
      this frame and becomes a lasting memory (a reference, not an ordinary tracked frame). If the
      frame was just passed to ``track`` (a key frame: tracked, corrected, then referenced), it counts
      as one frame, not two. A first reference with no object at all (a black first frame, automatic
      mode that finds nothing) is allowed by DeAOT/AOT: nothing is tracked (``track`` returns zeros)
      until a later reference brings objects, which then get a full reference as SAM-Track's engine
      gives them; SAM 2.1 / EdgeTAM refuse it (InputError), having no memory to start from.
    - ``track(frame) -> id_mask``: the next frame's ids; the memory is NOT updated. Only ids that were
      referenced can appear. With ``return_logits=True`` also float32 logits ``(C, H, W)`` at the frame's
      size whose argmax over channels is the returned mask: channel 0 is the background, channel ``i``
      object ``i`` (a very low constant for ids that are not tracked).
    - ``update_memory(id_mask)``: memorise the last tracked frame with this mask (its own output, or
      a corrected one); it may only hold ids already tracked.
    - ``reset()``: forget every object and frame; the next reference may have another size.
    """

    def reset(self) -> None: ...

    def add_reference(self, frame: np.ndarray, id_mask: np.ndarray) -> None: ...

    def track(self, frame: np.ndarray, return_logits: bool = False) -> Any: ...

    def update_memory(self, id_mask: np.ndarray) -> None: ...


def _model_type(directory: Path) -> str | None:
    try:
        return json.loads((directory / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def is_sam2_video(name_or_path: str) -> bool:
    """True for a SAM 2.1 / EdgeTAM registry name, or a directory holding such a model."""
    spec = find_spec(str(name_or_path))
    if spec is not None:
        return spec.family in _SAM2_FAMILIES
    path = Path(str(name_or_path)).expanduser()
    return path.is_dir() and _model_type(path) in SAM2_VIDEO_TYPES


def backend_of(name: str, checkpoint: str | Path | None = None) -> str:
    """``sam2video`` for SAM 2.1 / EdgeTAM / SAM 3 (by name, or by the checkpoint directory), else ``deaot``."""
    from samtrack.models.sam3.loading import is_sam3  # SAM 3's tracker runs on the SAM 2 propagator

    if any(is_sam2_video(n) or is_sam3(n) for n in (name, checkpoint) if n is not None):
        return "sam2video"
    return "deaot"


@dataclass(frozen=True)
class TrackerWeights:
    """A loaded tracker model, shared by every propagator made from it (read-only at inference)."""

    backend: str  # "deaot" or "sam2video"
    name: str
    device: str
    precision: str  # what runs (resolved): fp32, bf16 or fp16
    model: Any  # DeAOT: the prepared AOTNetwork; SAM 2.1 / EdgeTAM: (video model, processor)

    def propagator(self, *, long_term_mem_gap: int = 9999, max_len_long_term: int = 9999,
                   num_memory_frames: int | None = None, max_conditioning_frames: int = 4) -> Propagator:
        """A new propagator over these weights, with empty memory.

        ``long_term_mem_gap`` / ``max_len_long_term`` are DeAOT's memory knobs (SAM-Track's
        defaults: 9999), ``num_memory_frames`` / ``max_conditioning_frames`` SAM 2.1 / EdgeTAM's
        (see :class:`samtrack.models.sam2video.Sam2VideoPropagator`); each backend ignores the other's.
        """
        if self.backend == "sam2video":
            from samtrack.models.sam2video.propagator import Sam2VideoPropagator

            model, processor = self.model
            return Sam2VideoPropagator(model, processor, device=self.device, num_memory_frames=num_memory_frames,
                                       max_conditioning_frames=max_conditioning_frames, precision=self.precision)
        from samtrack.models.deaot.tracker import DeAOTTracker

        return DeAOTTracker(self.model, self.device, long_term_mem_gap, max_len_long_term, self.precision)


def load_tracker_weights(name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                         precision: str = "auto") -> TrackerWeights:
    """Load a tracker's weights once (see :func:`load_propagator` for the arguments)."""
    if backend_of(name, checkpoint) == "sam2video":
        from samtrack.models.sam2video.loading import load_sam2_video_model

        return load_sam2_video_model(str(checkpoint or name), device=device, precision=precision)
    from samtrack.models.deaot.tracker import load_deaot_weights

    return load_deaot_weights(name, checkpoint=checkpoint, device=device, precision=precision)


def load_propagator(name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                    long_term_mem_gap: int = 9999, max_len_long_term: int = 9999,
                    num_memory_frames: int | None = None, max_conditioning_frames: int = 4,
                    precision: str = "auto") -> Propagator:
    """Any tracker behind the :class:`Propagator` protocol.

    Args:
        name: ``r50-deaotl``, ``deaot-t``, ``swinb-deaotl``, ``aot-*`` ... (DeAOT/AOT), or
            ``sam2.1-tiny|sam2.1-small|sam2.1-base-plus|sam2.1-large|edgetam`` or a directory holding
            such a model (SAM 2.1 / EdgeTAM), or ``sam3`` / a SAM 3 directory (SAM 3's tracker, on the
            same propagator as SAM 2.1).
        checkpoint: DeAOT: the official ``.pth`` file; SAM 2.1 / EdgeTAM: a directory saved with
            ``save_pretrained``. None: the registry's cached copy (downloaded on first use).
        device: torch device (``auto`` picks cuda, mps, then cpu).
        long_term_mem_gap, max_len_long_term: DeAOT's memory knobs.
        num_memory_frames, max_conditioning_frames: SAM 2.1 / EdgeTAM's memory knobs.
        precision: ``fp32`` (exact), ``bf16`` or ``fp16`` autocast; ``auto`` (default) follows SAM-Track,
            which runs under fp16 autocast on GPUs: fp16 on CUDA, bf16 on CPUs where bf16 is faster
            (``models.common.native_bf16``), fp32 otherwise. The propagator's ``precision`` says what runs.
    """
    weights = load_tracker_weights(name, checkpoint, device, precision)
    return weights.propagator(long_term_mem_gap=long_term_mem_gap, max_len_long_term=max_len_long_term,
                              num_memory_frames=num_memory_frames, max_conditioning_frames=max_conditioning_frames)


load_tracker = load_propagator  # the public name: ``samtrack.load_tracker``
