"""Find, load and place a SAM-family image model: registry name, hub id, local directory or original ``.pth``.

SAM 3 checkpoints (``sam3``, ``facebook/sam3``) load through :func:`samtrack.models.sam3.load_sam3`,
which reads every weight of SAM 3's SAM 2-style image model from the one checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    EdgeTamModel,
    Sam2ImageProcessor,
    Sam2Model,
    SamHQModel,
    SamImageProcessor,
    SamModel,
)

from samtrack.errors import ModelError
from samtrack.models.common import TORCH_DTYPES, resolve_device, resolve_precision
from samtrack.models.registry import config_model_type, resolve_pretrained
from samtrack.models.sam.backends import PromptModel, Sam2PromptModel, Sam3PromptModel, SamHQPromptModel
from samtrack.models.sam.convert import sam_from_official_checkpoint
from samtrack.models.sam3.loading import ROLES_OF_TYPE, load_sam3

# config.json model_type -> (model class, image processor class, backend class)
_FAMILIES = {
    "sam": (SamModel, SamImageProcessor, PromptModel),
    "sam_hq": (SamHQModel, SamImageProcessor, SamHQPromptModel),
    "sam2": (Sam2Model, Sam2ImageProcessor, Sam2PromptModel),
    "edgetam": (EdgeTamModel, Sam2ImageProcessor, Sam2PromptModel),
}


def _model_type(directory: Path) -> str:
    model_type = config_model_type(directory)
    if model_type is None:
        raise ModelError(f"{directory} has no readable config.json with a model_type; "
                         "pass a directory saved with save_pretrained or a registry name")
    if model_type not in _FAMILIES:
        raise ModelError(f"{directory} holds a {model_type!r} model, not a SAM-family segmenter "
                         f"(expected one of {', '.join(_FAMILIES)})")
    return model_type


def load_prompt_model(name_or_path: str, device: str | torch.device = "auto", precision: str = "auto") -> PromptModel:
    """Load a SAM-family model by registry name, hub id, save_pretrained directory or original ``.pth`` file,
    its weights and activations in `precision` (``auto``: see :func:`samtrack.models.common.resolve_precision`)."""
    target_device = resolve_device(device)
    target_dtype = TORCH_DTYPES[resolve_precision(precision, target_device)]
    local = Path(str(name_or_path)).expanduser()
    path = local if local.is_file() else Path(resolve_pretrained(str(name_or_path), "segmenter"))
    if path.is_file():
        return PromptModel(sam_from_official_checkpoint(path), SamImageProcessor(), target_device, target_dtype)
    if config_model_type(path) in ROLES_OF_TYPE:
        sam3 = load_sam3(str(path), "segmenter", target_device, precision)
        return Sam3PromptModel(sam3.model, sam3.processor.image_processor, sam3.device, TORCH_DTYPES[sam3.precision])
    model_class, processor_class, backend_class = _FAMILIES[_model_type(path)]
    try:
        model = model_class.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load the segmenter weights in {path} ({err}); "
                         "re-download them (`samtrack download`) or re-save the directory") from err
    try:
        processor = processor_class.from_pretrained(path)
    except OSError:
        processor = processor_class()  # directories saved without a processor use the family default
    return backend_class(model, processor, target_device, target_dtype)
