"""Find and load SAM 3 for one role: text detector, SAM 2-style segmenter, video tracker or concept tracker.

One checkpoint, ``facebook/sam3`` (config ``model_type`` ``sam3_video``), holds every part: the
detector (``Sam3Model``: ViT backbone, CLIP text encoder, DETR head, mask head), the tracker (prompt
encoder, mask decoder, memory) and the tracker's own FPN neck over the shared backbone. transformers
reads each role's part from it, except that ``Sam3TrackerModel`` (the image segmenter) leaves its
prompt encoder and mask decoder randomly initialised (147 tensors) on a directory written by
``Sam3VideoModel.save_pretrained``, whose tracker keys carry the ``tracker_model.`` prefix twice (the
hub's file has it once); :func:`load_sam3` maps one prefix away, which reads both layouts. Every
role's load is checked: a weight missing from the checkpoint is a ModelError, never a silently random
layer.

The lite-text detectors (``vil-uob/sam3-litetext-*``, ``sam3_lite_text``) and a detector saved alone
(``sam3``) serve the detector role only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from samtrack.errors import ModelError
from samtrack.models.common import TORCH_DTYPES, resolve_device, resolve_precision
from samtrack.models.registry import config_model_type, find_spec, resolve_pretrained

ROLES = ("detector", "segmenter", "tracker", "concept")
SAM3_FAMILIES = ("sam3", "sam3-lite-text")

# config.json model_type -> the roles a checkpoint of that type can fill
ROLES_OF_TYPE: dict[str, tuple[str, ...]] = {
    "sam3_video": ROLES,
    "sam3": ("detector",),
    "sam3_lite_text": ("detector",),
    "sam3_tracker_video": ("segmenter", "tracker"),
    "sam3_tracker": ("segmenter",),
}

# The registry kind each role resolves names under (concept tracking runs with --tracker sam3).
_KIND_OF_ROLE = {"detector": "detector", "segmenter": "segmenter", "tracker": "tracker", "concept": "tracker"}


@dataclass(frozen=True)
class Sam3Weights:
    """A SAM 3 model loaded for one role, with its processor; shared read-only by its users."""

    role: str  # one of ROLES
    model: Any  # Sam3Model / Sam3LiteTextModel, Sam3TrackerModel, Sam3TrackerVideoModel or Sam3VideoModel
    processor: Any  # the role's transformers processor (image sizes, normalisation, tokenizer)
    device: torch.device
    precision: str  # resolved: fp32, bf16 or fp16
    model_type: str  # config.json's model_type of the checkpoint it came from
    source: str  # the name or path it was loaded from


def is_sam3(name_or_path: str) -> bool:
    """True for a SAM 3 registry name or hub id (``sam3``, ``facebook/sam3``, ``sam3-litetext-s0`` ...) or a
    directory holding a SAM 3 checkpoint; never downloads anything."""
    spec = find_spec(str(name_or_path))
    if spec is not None:
        return spec.family in SAM3_FAMILIES
    path = Path(str(name_or_path)).expanduser()
    return path.is_dir() and config_model_type(path) in ROLES_OF_TYPE


def _classes(role: str, model_type: str) -> tuple[Any, Any, dict[str, Any]]:
    """(model class, processor class, extra from_pretrained arguments) of a role on a checkpoint type."""
    import transformers as tf

    if role == "detector":
        model = tf.Sam3LiteTextModel if model_type == "sam3_lite_text" else tf.Sam3Model
        return model, tf.Sam3Processor, {}
    if role == "segmenter":
        # save_pretrained copies of the video model keep the tracker under `tracker_model.tracker_model.`;
        # transformers strips one prefix for Sam3TrackerModel, this mapping the other.
        mapping = {"key_mapping": {r"^tracker_model\.": ""}} if model_type == "sam3_video" else {}
        return tf.Sam3TrackerModel, tf.Sam3TrackerProcessor, mapping
    if role == "tracker":
        return tf.Sam3TrackerVideoModel, tf.Sam3TrackerVideoProcessor, {}
    return tf.Sam3VideoModel, tf.Sam3VideoProcessor, {}


def load_sam3(name_or_path: str = "sam3", role: str = "detector", device: str | torch.device = "auto",
              precision: str = "auto") -> Sam3Weights:
    """Load SAM 3 for `role` from a registry name (``sam3``, ``sam3-litetext-s0|s1|l``), a hub id
    (``facebook/sam3``) or a directory saved with ``save_pretrained``; downloads on first use.

    Roles: ``detector`` (text -> instance masks: ``Sam3Model`` or ``Sam3LiteTextModel``), ``segmenter``
    (clicks/boxes/masks: ``Sam3TrackerModel``, every weight loaded), ``tracker`` (``Sam3TrackerVideoModel``)
    and ``concept`` (detect-and-track: ``Sam3VideoModel``).

    Precision as samtrack's other loaders (``auto``: fp16 on CUDA, bf16 on CPUs where it is faster,
    fp32 otherwise). The tracker's weights stay fp32 (its tracker runs under autocast, as SAM 2.1's
    does); the other roles load their weights in the resolved precision.
    """
    if role not in ROLES:
        raise ModelError(f"unknown SAM 3 role {role!r}; use one of {', '.join(ROLES)}")
    dev = resolve_device(device)
    resolved = resolve_precision(precision, dev)
    directory = Path(resolve_pretrained(str(name_or_path), _KIND_OF_ROLE[role]))
    model_type = config_model_type(directory)
    if model_type not in ROLES_OF_TYPE:
        raise ModelError(f"{directory} holds a {model_type or 'unknown'} model, not SAM 3 (config.json model_type "
                         f"must be one of {', '.join(ROLES_OF_TYPE)}); pass facebook/sam3 or a directory saved "
                         "from it with save_pretrained")
    if role not in ROLES_OF_TYPE[model_type]:
        raise ModelError(f"{directory} holds a {model_type} checkpoint, which has no SAM 3 {role}; the full "
                         "checkpoint facebook/sam3 (`samtrack download sam3`) serves every role")
    model_class, processor_class, extra = _classes(role, model_type)
    dtype = torch.float32 if role == "tracker" else TORCH_DTYPES[resolved]
    try:
        model, info = model_class.from_pretrained(directory, dtype=dtype, output_loading_info=True, **extra)
        processor = processor_class.from_pretrained(directory)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ModelError(f"cannot load the SAM 3 {role} from {directory}: {err}. Download it again "
                         "(`samtrack download sam3`) or re-save the directory with save_pretrained") from err
    missing = sorted(info["missing_keys"]) + sorted(str(k[0]) for k in info.get("mismatched_keys", ()))
    if missing:
        raise ModelError(f"the SAM 3 {role} in {directory} lacks {len(missing)} weights ({', '.join(missing[:3])}, "
                         "...); the checkpoint is incomplete or of another version: download it again "
                         "(`samtrack download sam3`)")
    return Sam3Weights(role, model.to(dev).eval(), processor, dev, resolved, model_type, str(name_or_path))


def load_sam3_tracker_weights(name: str, checkpoint: str | Path | None = None, device: str | torch.device = "cpu",
                              precision: str = "auto") -> Any:
    """SAM 3's tracker (``Sam3TrackerVideoModel``) as tracker weights: it runs on samtrack's SAM 2 family
    tracker (:mod:`samtrack.models.sam2video`); `checkpoint`, when given, is the directory to load."""
    from samtrack.models.sam2video.loading import Sam2VideoWeights

    sam3 = load_sam3(str(checkpoint or name), "tracker", device, precision)
    return Sam2VideoWeights(str(name), str(sam3.device), sam3.precision, sam3.model, sam3.processor)


def serves_concept(name_or_path: str) -> bool:
    """Whether a tracker name or directory is a SAM 3 checkpoint that can detect and track by itself
    (``sam3``, ``facebook/sam3``, a ``sam3_video`` directory); never downloads anything."""
    spec = find_spec(str(name_or_path), "tracker")
    if spec is not None:
        return spec.family == "sam3"
    path = Path(str(name_or_path)).expanduser()
    return path.is_dir() and "concept" in ROLES_OF_TYPE.get(config_model_type(path) or "", ())


def load_sam3_concept_weights(name: str, checkpoint: str | Path | None = None, device: str | torch.device = "cpu",
                              precision: str = "auto") -> Sam3Weights:
    """SAM 3's detect-and-track model (``Sam3VideoModel``), to make :class:`ConceptTracker` s from."""
    return load_sam3(str(checkpoint or name), "concept", device, precision)
