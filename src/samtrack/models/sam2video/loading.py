"""Load a SAM 2.1 / EdgeTAM video propagator, and `load_propagator`: one entry point for every tracker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import (
    EdgeTamVideoModel,
    Sam2ImageProcessor,
    Sam2VideoModel,
    Sam2VideoProcessor,
    Sam2VideoVideoProcessor,
)

from samtrack.errors import ModelError
from samtrack.models.registry import find_spec, resolve_pretrained
from samtrack.models.sam2video.propagator import Sam2VideoPropagator

# config.json model_type -> model class. The hub's SAM 2.1 / EdgeTAM checkpoints hold the video
# model's weights whichever of the two types their config names.
_MODEL_TYPES = {"sam2_video": Sam2VideoModel, "sam2": Sam2VideoModel,
                "edgetam_video": EdgeTamVideoModel, "edgetam": EdgeTamVideoModel}
_FAMILIES = ("sam2", "edgetam")


def _model_type(directory: Path) -> str | None:
    try:
        return json.loads((directory / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def is_sam2_video(name_or_path: str) -> bool:
    """True for a SAM 2.1 / EdgeTAM registry name, or a directory holding such a model."""
    spec = find_spec(str(name_or_path), "segmenter")
    if spec is not None:
        return spec.family in _FAMILIES
    path = Path(str(name_or_path)).expanduser()
    return path.is_dir() and _model_type(path) in _MODEL_TYPES


def default_processor(image_size: int) -> Sam2VideoProcessor:
    """SAM 2's preprocessing (square resize to the model's input size, ImageNet mean/std)."""
    size = {"height": image_size, "width": image_size}
    image = Sam2ImageProcessor(size=size, mask_size={"height": image_size // 4, "width": image_size // 4})
    return Sam2VideoProcessor(image_processor=image, video_processor=Sam2VideoVideoProcessor(size=size))


def load_sam2_video(name_or_path: str, device: str | torch.device = "cpu", num_memory_frames: int | None = None,
                    max_conditioning_frames: int = 4) -> Sam2VideoPropagator:
    """A SAM 2.1 / EdgeTAM propagator from a registry name (``sam2.1-tiny`` ... ``edgetam``), a hub id or a
    directory saved with ``save_pretrained``. See :class:`Sam2VideoPropagator` for the memory knobs."""
    directory = Path(resolve_pretrained(str(name_or_path), "segmenter"))
    model_type = _model_type(directory)
    if model_type not in _MODEL_TYPES:
        raise ModelError(f"{directory} holds a {model_type or 'unknown'} model, not a SAM 2.1 / EdgeTAM video "
                         f"model (config.json model_type must be one of {', '.join(_MODEL_TYPES)})")
    model_class = _MODEL_TYPES[model_type]
    try:
        model = model_class.from_pretrained(directory, dtype=torch.float32)
    except ImportError as err:  # EdgeTAM's RepViT backbone comes from timm
        raise ModelError(f"loading {directory} needs a package that is not installed ({err}); "
                         "install it (EdgeTAM needs `pip install timm`)") from err
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelError(f"cannot load the video model in {directory}: {err}. Download it again "
                         "(`samtrack download NAME`) or pass a directory saved with save_pretrained") from err
    try:
        processor = Sam2VideoProcessor.from_pretrained(directory)
    except (OSError, ValueError):  # a directory with the model only: SAM 2's standard preprocessing
        processor = default_processor(model.config.image_size)
    return Sam2VideoPropagator(model, processor, device=device, num_memory_frames=num_memory_frames,
                               max_conditioning_frames=max_conditioning_frames)


def load_propagator(name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                    long_term_mem_gap: int = 9999, max_len_long_term: int = 9999,
                    num_memory_frames: int | None = None, max_conditioning_frames: int = 4) -> Any:
    """Any tracker behind the propagator interface (``add_reference``/``track``/``update_memory``/``reset``).

    Args:
        name: ``sam2.1-tiny|sam2.1-small|sam2.1-base-plus|sam2.1-large|edgetam`` (or a directory holding
            such a model) for SAM 2.1 / EdgeTAM; any other name (``r50-deaotl``, ``deaot-t``, ...) goes
            to :func:`samtrack.models.deaot.tracker.load_tracker`.
        checkpoint: SAM 2 / EdgeTAM: a directory saved with ``save_pretrained`` to use instead of the
            registry's cached copy; DeAOT: the official ``.pth`` file.
        device: torch device.
        long_term_mem_gap, max_len_long_term: DeAOT's memory knobs (SAM 2 has its own, below).
        num_memory_frames, max_conditioning_frames: SAM 2 / EdgeTAM's memory knobs
            (see :class:`Sam2VideoPropagator`); DeAOT has its own, above.
    """
    if is_sam2_video(name) or (checkpoint is not None and is_sam2_video(str(checkpoint))):
        return load_sam2_video(str(checkpoint or name), device=device, num_memory_frames=num_memory_frames,
                               max_conditioning_frames=max_conditioning_frames)
    from samtrack.models.deaot.tracker import load_tracker

    return load_tracker(name, checkpoint=checkpoint, device=device, long_term_mem_gap=long_term_mem_gap,
                        max_len_long_term=max_len_long_term)
