"""The tiny SAM 3 checkpoints of `sam3_tiny` load as every transformers SAM 3 model with all their
weights, and run a frame (the fixture every SAM 3 test builds on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sam3_tiny import IMAGE_SIZE, save_tiny_sam3_image, save_tiny_sam3_lite_text

FRAME = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def video_dir(tiny_sam3_video):
    return Path(tiny_sam3_video)


def _load(model_class, directory, **kwargs):
    model, info = model_class.from_pretrained(directory, output_loading_info=True, **kwargs)
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["mismatched_keys"], info["mismatched_keys"]
    return model.eval()


def test_video_checkpoint_is_a_sam3_video_model(video_dir):
    import json

    config = json.loads((video_dir / "config.json").read_text())
    assert config["model_type"] == "sam3_video"
    assert config["detector_config"]["model_type"] == "sam3"
    assert config["tracker_config"]["model_type"] == "sam3_tracker_video"
    assert (video_dir / "model.safetensors").is_file() and (video_dir / "tokenizer.json").is_file()


def test_detector_loads_from_the_video_checkpoint_and_finds_text(video_dir):
    from transformers import Sam3Model, Sam3Processor

    model = _load(Sam3Model, video_dir)
    processor = Sam3Processor.from_pretrained(video_dir)
    inputs = processor(images=FRAME, text="swan", return_tensors="pt")
    assert inputs["pixel_values"].shape[-2:] == (IMAGE_SIZE, IMAGE_SIZE)
    with torch.inference_mode():
        out = model(**inputs)
    queries = model.config.detr_decoder_config.num_queries
    assert out.pred_logits.shape == (1, queries) and out.pred_masks.shape[:2] == (1, queries)
    result = processor.post_process_instance_segmentation(out, threshold=0.0, target_sizes=[FRAME.shape[:2]])[0]
    assert result["masks"].shape == (queries, *FRAME.shape[:2])


def test_tracker_video_model_loads_and_tracks_a_click(video_dir):
    from transformers import Sam3TrackerVideoModel, Sam3TrackerVideoProcessor

    model = _load(Sam3TrackerVideoModel, video_dir)
    processor = Sam3TrackerVideoProcessor.from_pretrained(video_dir)
    session = processor.init_video_session(video=[FRAME, FRAME], inference_device="cpu")
    processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=1, input_points=[[[[40, 30]]]],
                                              input_labels=[[[1]]])
    with torch.inference_mode():
        first = model(inference_session=session, frame_idx=0)
        second = model(inference_session=session, frame_idx=1)
    for out in (first, second):
        masks = processor.post_process_masks([out.pred_masks], original_sizes=[FRAME.shape[:2]], binarize=False)[0]
        assert masks.shape[-2:] == FRAME.shape[:2]


def test_concept_model_loads_and_runs_a_text_prompt(video_dir):
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    model = _load(Sam3VideoModel, video_dir)
    processor = Sam3VideoProcessor.from_pretrained(video_dir)
    session = processor.init_video_session(video=[FRAME], inference_device="cpu")
    processor.add_text_prompt(session, "swan")
    with torch.inference_mode():
        outputs = list(model.propagate_in_video_iterator(session, max_frame_num_to_track=1))
    assert len(outputs) == 1
    result = processor.postprocess_outputs(session, outputs[0])
    assert result["masks"].shape[-2:] == FRAME.shape[:2] or result["masks"].numel() == 0


def test_tracker_image_model_gets_every_weight_with_the_prefix_mapped(video_dir):
    """Sam3TrackerModel.from_pretrained leaves the prompt encoder / mask decoder random on a save_pretrained
    copy of a sam3_video model (tracker keys under ``tracker_model.tracker_model.``) unless the tracker's
    ``tracker_model.`` prefix is mapped away."""
    from transformers import Sam3TrackerModel, Sam3TrackerVideoModel

    _, plain = Sam3TrackerModel.from_pretrained(video_dir, output_loading_info=True)
    assert any(k.startswith("prompt_encoder.") for k in plain["missing_keys"])  # the library's gap
    image = _load(Sam3TrackerModel, video_dir, key_mapping={r"^tracker_model\.": ""})
    video = _load(Sam3TrackerVideoModel, video_dir).state_dict()
    for key, value in image.state_dict().items():
        assert torch.equal(value, video[key]), key


@pytest.mark.parametrize("save", [save_tiny_sam3_image, save_tiny_sam3_lite_text], ids=["sam3", "lite_text"])
def test_image_detector_checkpoints_load_and_run(tmp_path, save):
    from transformers import AutoModel, Sam3Processor

    directory = save(tmp_path)
    model = _load(AutoModel, directory)
    processor = Sam3Processor.from_pretrained(directory)
    with torch.inference_mode():
        out = model(**processor(images=FRAME, text="duck", return_tensors="pt"))
    assert out.pred_masks.shape[1] == model.config.detr_decoder_config.num_queries
