"""Shared test fixtures: paths to the real data beside the repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
DAVIS = DATA / "davis2016"
DEAOT_FIXTURES = SHARED / "fixtures" / "deaot"


def davis_frames(seq: str) -> Path:
    return DAVIS / "JPEGImages" / "480p" / seq


def davis_annotations(seq: str) -> Path:
    return DAVIS / "Annotations" / "480p" / seq


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: threads only add overhead (on a busy two-core machine two threads made a tiny SAM 3
    frame ~50x slower than one). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def davis_root() -> Path:
    if not DAVIS.is_dir():
        pytest.fail(f"real data missing: {DAVIS} (CI runs with ../shared beside the repo)")
    return DAVIS


@pytest.fixture(scope="session")
def blackswan_mp4() -> Path:
    return DATA / "videos" / "blackswan.mp4"


def save_tiny_sam(out: Path, side: int = 256, seed: int = 0) -> Path:
    """A randomly initialised SAM at a tiny size, saved with save_pretrained like a user's local model."""
    import torch
    from transformers import SamConfig, SamImageProcessor, SamModel

    torch.manual_seed(seed)
    config = SamConfig(
        vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_dim": 64,
                       "output_channels": 32, "image_size": side, "patch_size": 16, "global_attn_indexes": [1],
                       "window_size": 4, "num_pos_feats": 16},
        prompt_encoder_config={"hidden_size": 32, "image_size": side, "patch_size": 16, "mask_input_channels": 8},
        mask_decoder_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_dim": 64,
                             "iou_head_hidden_dim": 32},
    )
    SamModel(config).eval().save_pretrained(out)
    SamImageProcessor(size={"longest_edge": side}, pad_size={"height": side, "width": side}).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory) -> str:
    """Path of a tiny random SAM directory (see `save_tiny_sam`), shared by the whole run."""
    return str(save_tiny_sam(tmp_path_factory.mktemp("tiny_sam")))


@pytest.fixture(scope="session")
def tiny_sam3_video(tmp_path_factory) -> str:
    """Path of a tiny random ``sam3_video`` directory (``facebook/sam3``'s layout, see `sam3_tiny`),
    shared by the whole run."""
    from sam3_tiny import save_tiny_sam3_video

    return str(save_tiny_sam3_video(tmp_path_factory.mktemp("tiny_sam3_video")))


@pytest.fixture(scope="session")
def tiny_sam3_video_hub(tmp_path_factory) -> str:
    """The same tiny ``sam3_video`` checkpoint with the key names of the hub's ``facebook/sam3`` file."""
    from sam3_tiny import save_tiny_sam3_video

    return str(save_tiny_sam3_video(tmp_path_factory.mktemp("tiny_sam3_video_hub"), hub_layout=True))


@pytest.fixture(scope="session")
def blackswan_small(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Blackswan frames 0-5 at a quarter of their size (213×120) as an image folder, and the swan's
    mask on frame 0 at that size."""
    out = tmp_path_factory.mktemp("blackswan_small6")
    for path in sorted(davis_frames("blackswan").glob("*.jpg"))[:6]:
        im = Image.open(path)
        im.resize((im.width // 4, im.height // 4), Image.BILINEAR).save(out / path.name, quality=95)
    gt = Image.open(min(davis_annotations("blackswan").glob("*.png")))
    return out, np.array(gt.resize((gt.width // 4, gt.height // 4), Image.NEAREST)) > 0


def assert_prompts_share_one_encoder_pass(seg, frame) -> None:
    """A click, a second click, a box and a stroke on one frame encode it once and give boolean masks."""
    seg._cache = None
    calls = []
    handle = seg.model.vision_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        first = seg.click(frame, [(100, 60)], [1])
        second = seg.click(frame, [(100, 60), (30, 30)], [1, 0])
        box = seg.box(frame, (20, 20, 120, 100))
        stroke = seg.stroke(frame, [(40, 40), (80, 90)], n_points=2)
    finally:
        handle.remove()
    assert len(calls) == 1
    for mask in (first, second, box, stroke):
        assert mask.dtype == bool and mask.shape == frame.shape[:2]
