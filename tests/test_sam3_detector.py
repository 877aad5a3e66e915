"""SAM 3 text detector: one encoder pass per frame for any number of categories, instance masks at the
frame's size, Grounding DINO's Detection type and threshold meanings (tiny random SAM 3)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import davis_frames
from PIL import Image
from sam3_tiny import save_tiny_sam3_lite_text

from samtrack.errors import InputError
from samtrack.models.grounding import Detection, Detector
from samtrack.models.sam3.detector import Sam3Detector, caption_categories


@pytest.fixture(scope="module")
def detector(tiny_sam3_video) -> Sam3Detector:
    return Sam3Detector.load(tiny_sam3_video, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.array(Image.open(davis_frames("blackswan") / "00000.jpg").resize((214, 120), Image.BILINEAR))


def _alone(detector: Sam3Detector, frame: np.ndarray, category: str, score: float, mask: float) -> list[tuple]:
    """Detections of one category with the model's own full forward pass (image encoded with the text)."""
    inputs = detector.processor(images=frame, text=category, return_tensors="pt")
    with torch.inference_mode():
        out = detector.model(**inputs)
    result = detector.processor.post_process_instance_segmentation(out, threshold=score, mask_threshold=mask,
                                                                   target_sizes=[frame.shape[:2]])[0]
    return sorted((round(s, 5), category, int(m.sum())) for s, m in zip(result["scores"].tolist(), result["masks"])
                  if m.any())


def test_categories_share_one_encoder_pass_and_match_each_category_alone(detector, frame):
    calls = []
    hook = detector.model.vision_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        found = detector.detect(frame, "Swan. duck", score_threshold=0.0, mask_threshold=0.5)
    finally:
        hook.remove()
    assert len(calls) == 1
    expected = sorted(_alone(detector, frame, "swan", 0.0, 0.5) + _alone(detector, frame, "duck", 0.0, 0.5))
    assert sorted((round(d.score, 5), d.phrase, int(d.mask.sum())) for d in found) == expected
    assert {d.phrase for d in found} == {"swan", "duck"}
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    for d in found:
        assert isinstance(d, Detection) and d.mask.dtype == bool and d.mask.shape == frame.shape[:2]
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 <= x1 <= frame.shape[1] and 0 <= y0 <= y1 <= frame.shape[0]


def test_thresholds_keep_what_their_names_say(detector, frame):
    every = detector.detect(frame, "swan", score_threshold=0.0)
    assert every, "the tiny model keeps some queries at score threshold 0"
    median = float(np.median([d.score for d in every]))
    assert all(d.score > median for d in detector.detect(frame, "swan", score_threshold=median))
    assert detector.detect(frame, "swan", score_threshold=1.0) == []  # nothing found: an empty list
    area = frame.shape[0] * frame.shape[1]
    box_area = [(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) / area for d in every]
    limit = float(np.median(box_area))
    small = detector.detect(frame, "swan", score_threshold=0.0, box_size_threshold=limit)
    assert len(small) == sum(a <= limit for a in box_area) < len(every)
    tight = detector.detect(frame, "swan", score_threshold=0.0, mask_threshold=0.9)
    loose = {round(d.score, 6): d.mask.sum() for d in every}
    assert all(d.mask.sum() <= loose[round(d.score, 6)] for d in tight)


def test_options_name_the_keywords_each_detector_reads():
    for cls in (Sam3Detector, Detector):
        params = inspect.signature(cls.detect).parameters
        assert set(cls.options) == {n for n, p in params.items() if p.default is not inspect.Parameter.empty}
    assert Detector.options == ("box_threshold", "text_threshold", "box_size_threshold")


@pytest.mark.parametrize("caption,error", [(" . ", "names nothing"), ("swan " * 20, "longer than SAM 3 reads")])
def test_bad_captions(detector, frame, caption, error):
    with pytest.raises(InputError, match=error):
        detector.detect(frame, caption)


def test_bad_thresholds_and_frames(detector, frame):
    with pytest.raises(InputError, match="score_threshold"):
        detector.detect(frame, "swan", score_threshold=1.5)
    with pytest.raises(InputError, match="box_size_threshold"):
        detector.detect(frame, "swan", box_size_threshold=0)
    with pytest.raises(InputError, match="RGB uint8"):
        detector.detect(frame.astype(np.float32), "swan")


def test_caption_categories():
    assert caption_categories("Swan. duck.swan") == ["swan", "duck"]
    assert caption_categories("black  swan") == ["black swan"]


def test_bf16_detector_runs_in_bf16(tiny_sam3_video, frame):
    detector = Sam3Detector.load(tiny_sam3_video, device="cpu", precision="bf16")
    assert detector.precision == "bf16" and detector.model.dtype == torch.bfloat16
    found = detector.detect(frame, "swan. duck", score_threshold=0.0)
    assert found and all(isinstance(d.score, float) and d.mask.shape == frame.shape[:2] for d in found)


def test_lite_text_detector(tmp_path, frame):
    detector = Sam3Detector.load(str(save_tiny_sam3_lite_text(tmp_path)), device="cpu", precision="fp32")
    assert type(detector.model).__name__ == "Sam3LiteTextModel"
    found = detector.detect(frame, "swan. duck", score_threshold=0.0)
    assert {d.phrase for d in found} == {"swan", "duck"}
    expected = sorted(_alone(detector, frame, "swan", 0.0, 0.5) + _alone(detector, frame, "duck", 0.0, 0.5))
    assert sorted((round(d.score, 5), d.phrase, int(d.mask.sum())) for d in found) == expected
