"""Load SAM 2.1 / EdgeTAM / SAM 3 tracker video-model weights (transformers), to make propagators from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from samtrack.errors import ModelError
from samtrack.models.common import resolve_device, resolve_precision
from samtrack.models.propagator import SAM2_VIDEO_TYPES, TrackerWeights, _model_type
from samtrack.models.registry import resolve_pretrained
from samtrack.models.sam3.loading import ROLES_OF_TYPE, load_sam3


def _model_class(model_type: str) -> Any:
    """The transformers video-model class for a config's model_type (imported only when needed)."""
    if model_type.startswith("edgetam"):
        from transformers import EdgeTamVideoModel

        return EdgeTamVideoModel
    from transformers import Sam2VideoModel

    return Sam2VideoModel


def default_processor(image_size: int) -> Any:
    """SAM 2's preprocessing (square resize to the model's input size, ImageNet mean/std)."""
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor, Sam2VideoVideoProcessor

    size = {"height": image_size, "width": image_size}
    image = Sam2ImageProcessor(size=size, mask_size={"height": image_size // 4, "width": image_size // 4})
    return Sam2VideoProcessor(image_processor=image, video_processor=Sam2VideoVideoProcessor(size=size))


def load_sam2_video_model(name_or_path: str, device: str | torch.device = "cpu",
                          precision: str = "auto") -> TrackerWeights:
    """SAM 2.1 / EdgeTAM / SAM 3 video-model weights from a registry name (``sam2.1-tiny`` ... ``edgetam``,
    ``sam3``), a hub id or a directory saved with ``save_pretrained``, to make propagators from."""
    from transformers import Sam2VideoProcessor

    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    directory = Path(resolve_pretrained(str(name_or_path), "tracker"))
    model_type = _model_type(directory)
    if model_type in ROLES_OF_TYPE:  # SAM 3: its tracker (Sam3TrackerVideoModel) drives the same propagator
        sam3 = load_sam3(str(directory), "tracker", dev, precision)
        return TrackerWeights("sam2video", str(name_or_path), str(dev), precision, (sam3.model, sam3.processor))
    if model_type not in SAM2_VIDEO_TYPES:
        raise ModelError(f"{directory} holds a {model_type or 'unknown'} model, not a SAM 2.1 / EdgeTAM video "
                         f"model (config.json model_type must be one of {', '.join(SAM2_VIDEO_TYPES)})")
    try:
        model = _model_class(model_type).from_pretrained(directory, dtype=torch.float32)
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
    model.to(dev).eval()
    return TrackerWeights("sam2video", str(name_or_path), str(dev), precision, (model, processor))
