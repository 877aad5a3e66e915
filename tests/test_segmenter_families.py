"""SAM-HQ, SAM 2.1 and EdgeTAM image models behind the same Segmenter interface (tiny random models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_prompts_share_one_encoder_pass, davis_frames
from PIL import Image
from transformers import (
    EdgeTamConfig,
    EdgeTamModel,
    Sam2Config,
    Sam2ImageProcessor,
    Sam2Model,
    SamHQConfig,
    SamHQModel,
)

from samtrack import Segmenter
from samtrack.models.sam.backends import Embedding, Sam2PromptModel, plain_grid_decoder

TINY_DECODER = {"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32}


def tiny_sam_hq() -> SamHQModel:
    return SamHQModel(SamHQConfig(
        vision_config={
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "global_attn_indexes": [1],
            "mlp_dim": 64, "output_channels": 32, "num_pos_feats": 16, "patch_size": 32, "window_size": 7,
        },
        prompt_encoder_config={"hidden_size": 32, "patch_size": 32},
        mask_decoder_config={
            "hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32, "vit_dim": 32,
        },
    ))


def tiny_sam2() -> Sam2Model:
    return Sam2Model(Sam2Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model", "hidden_size": 16, "num_attention_heads": 1,
                "blocks_per_stage": [1, 1, 2, 1], "embed_dim_per_stage": [16, 32, 64, 128],
                "num_attention_heads_per_stage": [1, 1, 1, 1], "window_size_per_stage": [8, 4, 14, 7],
                "global_attention_blocks": [3], "window_positional_embedding_background_size": [7, 7],
            },
            "backbone_channel_list": [128, 64, 32, 16],
            "fpn_hidden_size": 32,
        },
        prompt_encoder_config={"hidden_size": 32},
        mask_decoder_config=TINY_DECODER,
    ))


def tiny_edgetam() -> EdgeTamModel:
    """EdgeTAM's image model with a tiny mask decoder (its RepViT backbone comes from timm, full size)."""
    pytest.importorskip("timm", reason="EdgeTAM's RepViT backbone comes from timm")
    return EdgeTamModel(EdgeTamConfig(prompt_encoder_config={"hidden_size": 32}, mask_decoder_config=TINY_DECODER))


@pytest.fixture(scope="module", params=[("sam-hq", tiny_sam_hq), ("sam2", tiny_sam2)], ids=["sam-hq", "sam2"])
def seg(request, tmp_path_factory) -> Segmenter:
    family, build = request.param
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(family)
    build().save_pretrained(path)
    loaded = Segmenter.load(str(path), device="cpu", precision="fp32")
    assert loaded.family == family
    return loaded


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.array(Image.open(davis_frames("blackswan") / "00000.jpg").resize((214, 120), Image.BILINEAR))


def test_prompts_share_one_encoder_pass(seg, frame):
    assert_prompts_share_one_encoder_pass(seg, frame)


def test_everything_gives_an_id_mask(seg, frame):
    ids = seg.everything(frame, points_per_side=4, crop_n_layers=0, pred_iou_thresh=0.0,
                         stability_score_thresh=0.0, min_area=10)
    assert ids.dtype == np.uint8 and ids.shape == frame.shape[:2]
    present = np.unique(ids[ids > 0])
    np.testing.assert_array_equal(present, np.arange(1, len(present) + 1))


@pytest.mark.parametrize("build", [tiny_sam2, tiny_edgetam], ids=["sam2.1", "edgetam"])
def test_sam2_grid_decoder_equals_the_model_decoder(build):
    """Segment-everything's SAM 2 decoder (image-side work and high-resolution features shared by all
    prompts) gives the model's own forward pass's masks, IoUs and kept outputs.

    The image features are random with unit scale instead of a random encoder's near-zero output, so
    that the embedding and both high-resolution maps shape the logits well above the tolerance."""
    torch.manual_seed(0)
    model = Sam2PromptModel(build(), Sam2ImageProcessor(), torch.device("cpu"), torch.float32)
    side = model.model.prompt_encoder.image_embedding_size[0]
    widths = (TINY_DECODER["hidden_size"] // 8, TINY_DECODER["hidden_size"] // 4, TINY_DECODER["hidden_size"])
    features = [torch.randn(1, c, side * s, side * s) for c, s in zip(widths, (4, 2, 1))]
    embedding = Embedding(([*features],), [(1024, 1024)], [(120, 214)])
    points = model.to_model_coords(torch.rand(16, 2) * torch.tensor([214.0, 120.0]), embedding)
    ref_logits, ref_iou, _ = plain_grid_decoder(model, embedding)(points, None)
    split = float(ref_iou.median())  # keeps about half the outputs
    for min_iou, kept in ((None, 48), (split, int((ref_iou > split).sum())), (1.0, 0)):
        logits, iou, keep = model.grid_decoder(embedding)(points, min_iou)
        ref_logits, ref_iou, ref_keep = plain_grid_decoder(model, embedding)(points, min_iou)
        assert keep.shape == (16, 3) and int(keep.sum()) == kept
        assert logits.shape == (kept, *model.mask_input_size)
        torch.testing.assert_close(keep, ref_keep)
        torch.testing.assert_close(iou, ref_iou, rtol=1e-5, atol=1e-6)
        scale = float(ref_logits.abs().max()) if ref_logits.numel() else 1.0
        torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4 * scale)
