"""`--segmenter sam3`: SAM 3's SAM 2-style image model behind the Segmenter interface, loaded with every
weight from the one sam3_video checkpoint (tiny random SAM 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_prompts_share_one_encoder_pass, davis_frames
from PIL import Image

import samtrack
from samtrack.models.sam.backends import Embedding, Sam3PromptModel, plain_grid_decoder


@pytest.fixture(scope="module")
def seg(tiny_sam3_video) -> samtrack.Segmenter:
    return samtrack.Segmenter.load(tiny_sam3_video, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.array(Image.open(davis_frames("blackswan") / "00000.jpg").resize((214, 120), Image.BILINEAR))


def test_loads_as_the_sam3_family_with_its_mask_size(seg):
    assert seg.family == "sam3" and isinstance(seg.model, Sam3PromptModel)
    assert type(seg.model.model).__name__ == "Sam3TrackerModel"
    assert seg.model.mask_input_size == tuple(seg.model.model.prompt_encoder.mask_input_size) == (32, 32)


def test_click_box_and_stroke_share_one_encoder_pass(seg, frame):
    assert_prompts_share_one_encoder_pass(seg, frame)


def test_prompts_reach_the_decoder_in_model_coordinates(seg, frame):
    """A click at frame pixel (x, y) is the model's input point (x, y) scaled to the 112² input, so the
    segmenter's logits equal transformers' own processor + forward pass for the same click."""
    embedding = seg.model.embed([frame])
    points = seg.model.to_model_coords(torch.tensor([[[100.0, 60.0]]]), embedding)
    ours, iou = seg.model.decode(embedding, points, torch.ones(1, 1, dtype=torch.int64))
    from transformers import Sam3TrackerProcessor

    processor = Sam3TrackerProcessor(image_processor=seg.model.processor)
    inputs = processor(images=frame, input_points=[[[[100.0, 60.0]]]], input_labels=[[[1]]], return_tensors="pt")
    with torch.inference_mode():
        theirs = seg.model.model(**inputs, multimask_output=True)
    torch.testing.assert_close(ours, theirs.pred_masks[0].float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(iou, theirs.iou_scores[0].float(), rtol=1e-4, atol=1e-5)


def test_everything_gives_an_id_mask(seg, frame):
    ids = seg.everything(frame, points_per_side=4, crop_n_layers=0, pred_iou_thresh=0.0,
                         stability_score_thresh=0.0, min_area=10)
    assert ids.dtype == np.uint8 and ids.shape == frame.shape[:2]
    present = np.unique(ids[ids > 0])
    assert len(present) > 0
    np.testing.assert_array_equal(present, np.arange(1, len(present) + 1))


def test_grid_decoder_equals_the_model_decoder(seg):
    """Segment-everything's fast decoder on SAM 3's image model gives the model's own masks and IoUs
    (unit-scale random features, so the image side shapes the logits well above the tolerance)."""
    torch.manual_seed(0)
    model = seg.model
    side = model.model.prompt_encoder.image_embedding_size[0]
    widths = [model.model.mask_decoder.conv_s0.out_channels, model.model.mask_decoder.conv_s1.out_channels,
              model.model.config.mask_decoder_config.hidden_size]
    features = [torch.randn(1, c, side * s, side * s) for c, s in zip(widths, (4, 2, 1))]
    embedding = Embedding(([*features],), [(112, 112)], [(120, 214)])
    points = model.to_model_coords(torch.rand(16, 2) * torch.tensor([214.0, 120.0]), embedding)
    _, all_iou, _ = plain_grid_decoder(model, embedding)(points, None)
    for min_iou, kept in ((None, 48), (float(all_iou.median()), int((all_iou > all_iou.median()).sum()))):
        logits, iou, keep = model.grid_decoder(embedding)(points, min_iou)
        ref_logits, ref_iou, ref_keep = plain_grid_decoder(model, embedding)(points, min_iou)
        assert keep.shape == (16, 3) and int(keep.sum()) == kept and logits.shape == (kept, *model.mask_input_size)
        torch.testing.assert_close(keep, ref_keep)
        torch.testing.assert_close(iou, ref_iou, rtol=1e-5, atol=1e-6)
        scale = float(ref_logits.abs().max())
        torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4 * scale)


def test_bf16_segmenter(tiny_sam3_video, frame):
    seg = samtrack.Segmenter.load(tiny_sam3_video, device="cpu", precision="bf16")
    assert seg.precision == "bf16" and seg.model.model.dtype == torch.bfloat16
    mask = seg.click(frame, [(100, 60)], [1])
    assert mask.dtype == bool and mask.shape == frame.shape[:2]
