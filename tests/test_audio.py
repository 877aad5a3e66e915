"""Audio grounding: soundtrack decoding with PyAV, tiny random AST saved and reloaded, `samtrack sounds`."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from samtrack.cli import main
from samtrack.errors import InputError, ModelError
from samtrack.models.audio import AudioTagger, decode_audio, resample

LABELS = ["Speech", "Music", "Dog", "Silence", "Sine wave", "Engine"]
TONE_HZ = 440.0
CLIP_S = 2.5
WINDOW_FRAMES = 100  # the tiny model's window: 100 fbank frames = 1 s


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       max_length=WINDOW_FRAMES, num_mel_bins=128, id2label=dict(enumerate(LABELS)),
                       label2id={label: i for i, label in enumerate(LABELS)})
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("ast") / "model"
    ASTForAudioClassification(config).save_pretrained(out)
    with pytest.warns(UserWarning, match="mel filter"):  # transformers' numpy fbank, see AudioTagger.load
        ASTFeatureExtractor(max_length=WINDOW_FRAMES).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tagger(tiny_dir: Path) -> AudioTagger:
    return AudioTagger.load(str(tiny_dir))


@pytest.fixture(scope="module")
def video_with_sound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2.5 s MP4: a few tiny video frames and a 440 Hz stereo AAC tone at 44.1 kHz."""
    path = tmp_path_factory.mktemp("video") / "tone.mp4"
    rate, chunk = 44_100, 1024
    tone = (0.5 * np.sin(2 * np.pi * TONE_HZ * np.arange(int(rate * CLIP_S)) / rate)).astype(np.float32)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "stereo"
        for i in range(int(10 * CLIP_S)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), format="rgb24")
            out.mux(video.encode(frame))
        for start in range(0, tone.size, chunk):
            piece = tone[start:start + chunk]
            frame = av.AudioFrame.from_ndarray(np.stack([piece, piece]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        out.mux(video.encode(None))
    return path


def _peak_hz(waveform: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(waveform.size)))
    return float(np.fft.rfftfreq(waveform.size, 1 / rate)[spectrum.argmax()])


def test_decode_whole_soundtrack(video_with_sound: Path) -> None:
    waveform, rate = decode_audio(video_with_sound)
    assert rate == 16_000 and waveform.dtype == np.float32 and waveform.ndim == 1
    assert waveform.size / rate == pytest.approx(CLIP_S, abs=0.05)
    assert _peak_hz(waveform, rate) == pytest.approx(TONE_HZ, abs=2)
    middle = waveform[rate // 2: -rate // 2]
    assert np.abs(middle).max() == pytest.approx(0.5, abs=0.05)  # mean of two equal channels: no downmix gain


def test_decode_window(video_with_sound: Path) -> None:
    waveform, rate = decode_audio(video_with_sound, start=0.75, end=1.75)
    assert waveform.size == pytest.approx(rate, abs=rate * 0.01)
    assert _peak_hz(waveform, rate) == pytest.approx(TONE_HZ, abs=2)
    tail, _ = decode_audio(video_with_sound, start=2.0)
    assert tail.size / rate == pytest.approx(CLIP_S - 2.0, abs=0.05)


def test_decode_errors(video_with_sound: Path, blackswan_mp4: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no audio track.*--text"):
        decode_audio(blackswan_mp4)
    with pytest.raises(InputError, match="does not exist"):
        decode_audio(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError, match="cannot read"):
        decode_audio(broken)
    with pytest.raises(InputError, match="must be after"):
        decode_audio(video_with_sound, start=2.0, end=1.0)
    with pytest.raises(InputError, match=">= 0"):
        decode_audio(video_with_sound, start=-1.0)
    with pytest.raises(InputError, match="no audio between 5 s and the end"):
        decode_audio(video_with_sound, start=5.0)


def test_resample_keeps_pitch() -> None:
    tone = np.sin(2 * np.pi * TONE_HZ * np.arange(8000) / 8000).astype(np.float32)
    up = resample(tone, 8000, 16_000)
    assert up.size == pytest.approx(16_000, abs=64)
    assert _peak_hz(up, 16_000) == pytest.approx(TONE_HZ, abs=2)


def test_tag_real_forward(tagger: AudioTagger, video_with_sound: Path) -> None:
    waveform, rate = decode_audio(video_with_sound)
    probs = tagger.probabilities(waveform, rate)
    assert probs.shape == (len(LABELS),) and ((probs > 0) & (probs < 1)).all()
    tags = tagger.tag(waveform, rate, label_num=3, threshold=0.0)
    assert [label for label, _ in tags] == [LABELS[i] for i in np.argsort(-probs)[:3]]
    assert [p for _, p in tags] == pytest.approx(sorted(probs, reverse=True)[:3])
    # the same clip given at 8 kHz is resampled to the model's rate first
    slow = resample(waveform, rate, 8000)
    assert tagger.probabilities(slow, 8000) == pytest.approx(probs, abs=0.05)


class _RecordingModel:
    """Stands in for the network: logits from a callback, and a record of every batch it saw."""

    def __init__(self, config, make_logits) -> None:
        self.config = config
        self.batches: list[torch.Tensor] = []
        self.make_logits = make_logits

    def __call__(self, input_values: torch.Tensor):
        self.batches.append(input_values)
        return SimpleNamespace(logits=self.make_logits(input_values))


def test_tag_is_sigmoid_top_k_over_threshold(tagger: AudioTagger, monkeypatch: pytest.MonkeyPatch) -> None:
    logits = torch.tensor([2.0, -3.0, 0.0, 1.0, -1.0, -4.0])  # sigmoid: .881 .047 .5 .731 .269 .018
    fake = _RecordingModel(tagger.model.config, lambda x: logits.expand(x.shape[0], -1))
    monkeypatch.setattr(tagger, "model", fake)
    waveform = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    tags = tagger.tag(waveform, 16_000)
    assert [label for label, _ in tags] == ["Speech", "Silence", "Dog", "Sine wave"]  # .047 and .018 <= 0.05
    assert [p for _, p in tags] == pytest.approx(torch.sigmoid(logits[[0, 3, 2, 4]]).tolist())
    assert [label for label, _ in tagger.tag(waveform, 16_000, label_num=2)] == ["Speech", "Silence"]
    assert tagger.tag(waveform, 16_000, threshold=0.9) == []
    with pytest.raises(InputError, match=">= 1"):
        tagger.tag(waveform, 16_000, label_num=0)


def test_long_clip_is_scored_window_by_window(tagger: AudioTagger, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2.5 windows of audio, loud only in the second half of the clip: windows [0,1) [1,2) [1.5,2.5) s
    waveform = np.full(int(2.5 * 16_000), 1e-4, np.float32)
    waveform[int(1.25 * 16_000):] = 0.5

    def loudness_logits(x: torch.Tensor) -> torch.Tensor:
        loud = x.mean(dim=(1, 2))  # normalised log-mel energy per window
        out = torch.full((x.shape[0], len(LABELS)), -5.0)
        out[:, 1] = torch.where(loud > loud.min(), 5.0, -5.0)  # "Music" in the loudest windows only
        return out

    fake = _RecordingModel(tagger.model.config, loudness_logits)
    monkeypatch.setattr(tagger, "model", fake)
    probs = tagger.probabilities(waveform, 16_000, batch_size=2)
    assert [b.shape[0] for b in fake.batches] == [2, 1]  # three full windows, batched by two
    assert all(b.shape[1] == WINDOW_FRAMES for b in fake.batches)
    assert probs[1] == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())  # max over the windows
    assert tagger.window_seconds == pytest.approx(1.0)


def test_tag_bad_audio(tagger: AudioTagger) -> None:
    with pytest.raises(InputError, match="digital silence"):
        tagger.tag(np.zeros(16_000, np.float32), 16_000)
    with pytest.raises(InputError, match="non-empty 1-D"):
        tagger.tag(np.zeros(0, np.float32), 16_000)
    with pytest.raises(InputError, match="sample rate"):
        tagger.tag(np.ones(100, np.float32), 0)
    with pytest.raises(InputError, match="at least 25 ms"):
        tagger.tag(np.ones(300, np.float32), 16_000)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        AudioTagger.load(str(tmp_path / "nowhere" / "model"))
    with pytest.raises(ModelError, match="cannot load an AST"):
        AudioTagger.load(str(tmp_path))


def test_sounds_command(tiny_dir: Path, video_with_sound: Path, blackswan_mp4: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sounds", str(video_with_sound), "--model", str(tiny_dir), "--top", "2", "--threshold", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line in lines:
        label, prob = line.rsplit(maxsplit=1)
        assert label.strip() in LABELS and 0 < float(prob) < 1

    assert main(["sounds", str(video_with_sound), "--model", str(tiny_dir), "--threshold", "1", "--end", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "lower --threshold" in captured.err

    assert main(["sounds", str(blackswan_mp4), "--model", str(tiny_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("samtrack: error:") and "no audio track" in err and len(err.strip().splitlines()) == 1
