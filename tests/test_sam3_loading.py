"""SAM 3 loading: every role from the one sam3_video checkpoint with every weight read from it (none
missing or randomly initialised), lite-text detectors, and clear errors for other directories."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from sam3_tiny import save_tiny_sam3_lite_text

from samtrack.errors import ModelError
from samtrack.models.sam3 import ROLES, is_sam3, load_sam3

CLASSES = {"detector": "Sam3Model", "segmenter": "Sam3TrackerModel", "tracker": "Sam3TrackerVideoModel",
           "concept": "Sam3VideoModel"}


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha1(tensor.detach().float().contiguous().numpy().tobytes()).hexdigest()


def _checkpoint_digests(directory: Path) -> set[tuple[tuple[int, ...], str]]:
    return {(tuple(t.shape), _digest(t)) for t in load_file(directory / "model.safetensors").values()}


@pytest.fixture(scope="module")
def lite_dir(tmp_path_factory) -> Path:
    return save_tiny_sam3_lite_text(tmp_path_factory.mktemp("sam3_lite"))


@pytest.mark.parametrize("layout", ["save_pretrained", "hub"])
@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_every_weight_from_the_video_checkpoint(request, role, layout):
    """Each loaded tensor equals a tensor of the checkpoint: a missing (randomly initialised) weight
    would match none. The segmenter is the case transformers gets wrong without the prefix mapping
    (on a save_pretrained copy, whose tracker keys carry the prefix twice)."""
    directory = request.getfixturevalue("tiny_sam3_video" if layout == "save_pretrained" else "tiny_sam3_video_hub")
    weights = load_sam3(directory, role, device="cpu", precision="fp32")
    assert type(weights.model).__name__ == CLASSES[role]
    assert weights.role == role and weights.model_type == "sam3_video" and weights.precision == "fp32"
    saved = _checkpoint_digests(Path(directory))
    state = weights.model.state_dict()
    random = [k for k, t in state.items() if (tuple(t.shape), _digest(t)) not in saved]
    assert not random, f"{len(random)} of {len(state)} tensors are not from the checkpoint: {random[:5]}"


def test_detector_loads_in_the_asked_precision_and_the_tracker_stays_fp32(tiny_sam3_video):
    detector = load_sam3(tiny_sam3_video, "detector", device="cpu", precision="bf16")
    assert detector.precision == "bf16" and detector.model.dtype == torch.bfloat16
    tracker = load_sam3(tiny_sam3_video, "tracker", device="cpu", precision="bf16")
    assert tracker.precision == "bf16" and tracker.model.dtype == torch.float32  # autocast at run time


def test_lite_text_checkpoint_is_a_detector_only(lite_dir):
    weights = load_sam3(str(lite_dir), "detector", device="cpu", precision="fp32")
    assert type(weights.model).__name__ == "Sam3LiteTextModel" and weights.model_type == "sam3_lite_text"
    saved = _checkpoint_digests(lite_dir)
    assert all((tuple(t.shape), _digest(t)) in saved for t in weights.model.state_dict().values())
    with pytest.raises(ModelError, match="sam3_lite_text checkpoint, which has no SAM 3 tracker"):
        load_sam3(str(lite_dir), "tracker", device="cpu")


def test_a_checkpoint_missing_weights_is_refused(tiny_sam3_video, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sam3_video, broken)
    tensors = load_file(broken / "model.safetensors")
    dropped = [k for k in tensors if k.startswith("tracker_model.tracker_model.mask_decoder.")]
    save_file({k: v for k, v in tensors.items() if k not in dropped}, broken / "model.safetensors",
              metadata={"format": "pt"})
    load_sam3(str(broken), "detector", device="cpu", precision="fp32")  # the detector has all it needs
    with pytest.raises(ModelError, match=rf"segmenter in .* lacks {len(dropped)} weights \(mask_decoder\."):
        load_sam3(str(broken), "segmenter", device="cpu", precision="fp32")


def test_a_directory_that_is_not_sam3_names_its_model_type(tiny_sam):
    assert not is_sam3(tiny_sam)
    with pytest.raises(ModelError, match="holds a sam model, not SAM 3"):
        load_sam3(tiny_sam, "segmenter", device="cpu")


def test_is_sam3_by_name_hub_id_and_directory(tiny_sam3_video, lite_dir):
    for name in ("sam3", "SAM3", "facebook/sam3", "sam3-litetext-s0", "vil-uob/sam3-litetext-l",
                 tiny_sam3_video, str(lite_dir)):
        assert is_sam3(name), name
    for name in ("sam2.1-tiny", "edgetam", "r50-deaotl", "grounding-dino-tiny", "facebook/sam2.1-hiera-tiny"):
        assert not is_sam3(name), name
    assert json.loads((Path(tiny_sam3_video) / "config.json").read_text())["model_type"] == "sam3_video"


def test_unknown_role():
    with pytest.raises(ModelError, match="unknown SAM 3 role 'painter'"):
        load_sam3("sam3", "painter")
