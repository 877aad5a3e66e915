"""Grounding DINO detector: tiny random model saved and reloaded, SAM-Track's threshold semantics."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import davis_frames
from PIL import Image

from samtrack.errors import InputError, ModelError
from samtrack.models.grounding import Detection, Detector, normalize_caption

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "swan", "water", "black", "dog", "##s"]
MAX_TEXT_LEN = 32


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    root = tmp_path_factory.mktemp("gdino")
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizer(vocab=str(root / "vocab.txt"))
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=2, out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=MAX_TEXT_LEN)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, num_queries=12, encoder_layers=1,
                                 decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, d_model=32,
                                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=1,
                                 decoder_n_points=1, max_text_len=MAX_TEXT_LEN)
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config)
    # A small input size keeps the test fast; the real processor uses 800/1333 like SAM-Track.
    images = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    out = root / "model"
    model.save_pretrained(out)
    GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def detector(tiny_dir: Path) -> Detector:
    return Detector.load(str(tiny_dir))


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    path = min(davis_frames("blackswan").glob("*.jpg"))
    return np.asarray(Image.open(path).convert("RGB"))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class _FixedOutput:
    """Stands in for the network: returns chosen token probabilities and boxes, keeps the real config."""

    def __init__(self, config, token_probs: list[dict[int, float]], boxes: list[tuple[float, ...]]) -> None:
        self.config = config
        logits = torch.full((1, len(token_probs), MAX_TEXT_LEN), _logit(0.01))
        logits[0, :, 10:] = _logit(0.99)  # past the caption's tokens: must be ignored
        for q, probs in enumerate(token_probs):
            for pos, p in probs.items():
                logits[0, q, pos] = _logit(p)
        self.output = SimpleNamespace(logits=logits, pred_boxes=torch.tensor([boxes], dtype=torch.float32))

    def __call__(self, **inputs):
        return self.output


# caption "swan. water" -> [CLS] swan . water . [SEP]: "swan" at 1, "water" at 3
SWAN, WATER, DOT, SEP = 1, 3, 2, 5
QUERIES = [
    ({SWAN: 0.9}, (0.25, 0.25, 0.1, 0.1)),               # a swan
    ({WATER: 0.3}, (0.5, 0.75, 0.2, 0.2)),               # just above box_threshold: water
    ({SWAN: 0.2, WATER: 0.24}, (0.5, 0.5, 0.2, 0.2)),    # below box_threshold
    ({SWAN: 0.8, WATER: 0.6, DOT: 0.7}, (0.7, 0.3, 0.2, 0.2)),  # both words
    ({SEP: 0.95}, (0.5, 0.5, 1.0, 1.0)),                # whole frame, only a special token
    ({WATER: 0.5}, (0.95, 0.5, 0.3, 0.4)),               # crosses the right border
]


@pytest.fixture
def fixed(detector: Detector, monkeypatch: pytest.MonkeyPatch) -> Detector:
    fake = _FixedOutput(detector.model.config, [q for q, _ in QUERIES], [b for _, b in QUERIES])
    monkeypatch.setattr(detector, "model", fake)
    return detector


def test_caption_normalisation() -> None:
    assert normalize_caption("Swan.water") == "swan. water."
    assert normalize_caption("  A  Black Swan . ") == "a black swan."
    assert normalize_caption("dog") == "dog."
    for empty in ("", "   ", " . .. "):
        with pytest.raises(InputError, match="names nothing"):
            normalize_caption(empty)


def test_load_and_detect_real_forward(detector: Detector, frame: np.ndarray) -> None:
    h, w = frame.shape[:2]
    found = detector.detect(frame, "swan. water", box_threshold=0.0, text_threshold=0.0)
    assert len(found) == detector.model.config.num_queries  # threshold 0 keeps every query
    assert all(isinstance(d, Detection) for d in found)
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] < 1
    boxes = np.array([d.box for d in found])
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    assert boxes.min() >= 0 and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()
    assert {word for d in found for word in d.phrase.split()} <= {"swan", "water"}
    top = found[0].score
    assert detector.detect(frame, "swan. water", box_threshold=min(top + 1e-3, 1.0)) == []


def test_bfloat16_autocast_runs(tiny_dir: Path, frame: np.ndarray) -> None:
    det = Detector.load(str(tiny_dir), dtype="bfloat16")
    found = det.detect(frame, "black swan", box_threshold=0.0)
    assert len(found) == det.model.config.num_queries and all(np.isfinite(d.box).all() for d in found)


def test_box_and_text_thresholds(fixed: Detector, frame: np.ndarray) -> None:
    h, w = frame.shape[:2]
    found = fixed.detect(frame, "Swan. Water")
    assert [d.phrase for d in found] == ["", "swan", "swan water", "water", "water"]
    assert [round(d.score, 4) for d in found] == [0.95, 0.9, 0.8, 0.5, 0.3]
    swan = found[1]
    assert swan.box == pytest.approx((0.2 * w, 0.2 * h, 0.3 * w, 0.3 * h), rel=1e-5)
    crossing = found[3]
    assert crossing.box == pytest.approx((0.8 * w, 0.3 * h, w, 0.7 * h), rel=1e-5)  # clipped to the frame

    strict_text = fixed.detect(frame, "swan. water", text_threshold=0.85)
    assert [d.phrase for d in strict_text] == ["", "swan", "", "", ""]
    strict_box = fixed.detect(frame, "swan. water", box_threshold=0.85)
    assert [d.score for d in strict_box] == pytest.approx([0.95, 0.9], abs=1e-5)


def test_box_size_threshold_drops_large_boxes(fixed: Detector, frame: np.ndarray) -> None:
    # areas (fractions of the frame), best score first: 1.0, 0.01, 0.04, 0.08 (0.2 × 0.4 once clipped), 0.04
    kept = fixed.detect(frame, "swan. water", box_size_threshold=0.5)
    assert [d.score for d in kept] == pytest.approx([0.9, 0.8, 0.5, 0.3], abs=1e-5)
    kept = fixed.detect(frame, "swan. water", box_size_threshold=0.05)
    assert [d.score for d in kept] == pytest.approx([0.9, 0.8, 0.3], abs=1e-5)


def test_no_detection_is_empty(detector: Detector, frame: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FixedOutput(detector.model.config, [{}] * 4, [(0.5, 0.5, 0.1, 0.1)] * 4)
    monkeypatch.setattr(detector, "model", fake)
    assert detector.detect(frame, "dog") == []


def test_bad_inputs(detector: Detector, frame: np.ndarray) -> None:
    with pytest.raises(InputError, match="names nothing"):
        detector.detect(frame, "  ")
    with pytest.raises(InputError, match="RGB uint8 array of shape H x W x 3"):
        detector.detect(frame.astype(np.float32), "swan")
    with pytest.raises(InputError, match="RGB uint8 array of shape H x W x 3"):
        detector.detect(frame[..., 0], "swan")
    with pytest.raises(InputError, match="box_threshold"):
        detector.detect(frame, "swan", box_threshold=1.5)
    with pytest.raises(InputError, match="box_size_threshold"):
        detector.detect(frame, "swan", box_size_threshold=0)
    with pytest.raises(InputError, match="at most 32"):
        detector.detect(frame, ". ".join(["black swan"] * 12))


def test_load_errors(tmp_path: Path, tiny_dir: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Detector.load(str(tmp_path / "nowhere" / "model"))
    with pytest.raises(ModelError, match="cannot load a Grounding DINO"):
        Detector.load(str(tmp_path))
    with pytest.raises(InputError, match="unknown dtype"):
        Detector.load(str(tiny_dir), dtype="int8")
    with pytest.raises(InputError, match="float16 is for GPUs"):
        Detector.load(str(tiny_dir), dtype="float16")
