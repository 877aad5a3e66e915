"""Load SAM 2.1 / EdgeTAM video-model weights (transformers), to make trackers from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from samtrack.errors import ModelError
from samtrack.models.common import resolve_device, resolve_precision
from samtrack.models.registry import config_model_type, resolve_pretrained
from samtrack.models.tracker import MemoryOptions

# config.json model_type of the SAM 2.1 / EdgeTAM checkpoints (image or video flavour: the hub's
# checkpoints hold the video model's weights whichever type their config names)
SAM2_VIDEO_TYPES = ("sam2_video", "sam2", "edgetam_video", "edgetam")


@dataclass(frozen=True)
class Sam2VideoWeights:
    """A SAM 2.1 / EdgeTAM video model and its processor, shared by every tracker made from them."""

    name: str
    device: str
    precision: str
    model: Any
    processor: Any

    def tracker(self, memory: MemoryOptions = MemoryOptions()) -> Any:  # noqa: B008 - frozen default
        from samtrack.models.sam2video.tracker import Sam2VideoTracker

        return Sam2VideoTracker(self.model, self.processor, device=self.device,
                                num_memory_frames=memory.num_memory_frames,
                                max_conditioning_frames=memory.max_conditioning_frames, precision=self.precision)


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


def load_sam2_video_weights(name: str, checkpoint: str | Path | None = None, device: str | torch.device = "cpu",
                            precision: str = "auto") -> Sam2VideoWeights:
    """SAM 2.1 / EdgeTAM video-model weights from a registry name (``sam2.1-tiny`` ... ``edgetam``), a hub
    id or a directory saved with ``save_pretrained`` (`checkpoint`, when given, is that directory)."""
    from transformers import Sam2VideoProcessor

    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    directory = Path(resolve_pretrained(str(checkpoint or name), "tracker"))
    model_type = config_model_type(directory)
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
    return Sam2VideoWeights(str(name), str(dev), precision, model, processor)
