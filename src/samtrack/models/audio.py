"""Audio grounding: name what makes the sound in a video's soundtrack (AST on AudioSet).

SAM-Track extracts the soundtrack, runs the Audio Spectrogram Transformer fine-tuned on AudioSet, and
turns the top labels into a text prompt for Grounding DINO. Here the soundtrack is decoded in memory
with PyAV (no temporary files), resampled to the model's rate by libswresample, and classified by
transformers' `ASTForAudioClassification` with its `ASTFeatureExtractor` (the same Kaldi fbank and
normalisation as SAM-Track's AST code).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import torch

from samtrack.errors import InputError, ModelError
from samtrack.models.common import resolve_device
from samtrack.models.registry import resolve_pretrained

if TYPE_CHECKING:
    from transformers import ASTFeatureExtractor

MODEL_RATE = 16_000  # Hz, what the AudioSet AST was trained on
_FRAME_SHIFT = MODEL_RATE // 100  # the fbank hop is 10 ms
_FRAME_LENGTH_S = 0.025  # one fbank frame: the shortest clip that can be classified


def _to_mono_planes(frame: av.AudioFrame) -> np.ndarray:
    """Mean of the channels: for a dual-mono track this is exactly the left channel SAM-Track reads."""
    return frame.to_ndarray().reshape(frame.layout.nb_channels, -1).mean(axis=0)


def decode_audio(video_path: str | Path, start: float | None = None, end: float | None = None,
                 rate: int = MODEL_RATE) -> tuple[np.ndarray, int]:
    """The first audio stream of a video (or audio file) as a float32 mono waveform at ``rate`` Hz.

    ``start``/``end`` (seconds) cut a window; None means the beginning / the end of the stream.
    Returns ``(waveform, rate)``. A file without an audio stream raises InputError.
    """
    path = Path(video_path)
    if start is not None and start < 0:
        raise InputError(f"--start must be >= 0 seconds, got {start}")
    if start is not None and end is not None and end <= start:
        raise InputError(f"--end ({end}) must be after --start ({start})")
    if not path.is_file():
        raise InputError(f"input {path} does not exist or is not a file")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise InputError(f"cannot read {path} as a video or audio file ({err}); check that it is not corrupt") from err
    with container:
        if not container.streams.audio:
            raise InputError(f"{path} has no audio track, so there is no sound to ground; "
                             "use a text prompt (--text) instead")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", rate=rate)  # planar float, source channel layout
        t0 = None
        pieces: list[np.ndarray] = []
        decoded = 0  # samples at `rate` so far
        try:
            if start:
                container.seek(int(start / stream.time_base), stream=stream, any_frame=False, backward=True)
            for frame in container.decode(stream):
                if t0 is None:
                    t0 = float(frame.time) if frame.time is not None else 0.0
                for out in resampler.resample(frame):
                    pieces.append(_to_mono_planes(out))
                    decoded += pieces[-1].size
                if end is not None and t0 + decoded / rate >= end:
                    break
            pieces.extend(_to_mono_planes(out) for out in resampler.resample(None))
        except av.error.FFmpegError as err:
            raise InputError(f"the audio track of {path} cannot be decoded ({err})") from err
    waveform = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
    first = round(((start or 0.0) - (t0 or 0.0)) * rate)
    last = None if end is None else round((end - (t0 or 0.0)) * rate)
    waveform = waveform[max(first, 0):last]
    if waveform.size == 0:
        window = f" between {start or 0:g} s and " + ("the end" if end is None else f"{end:g} s")
        raise InputError(f"{path} has no audio{window}; check --start/--end against the video's length")
    return waveform, rate


def resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    """A mono float waveform from ``rate`` to ``target`` Hz (libswresample, as in decoding)."""
    if rate == target:
        return waveform.astype(np.float32, copy=False)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(waveform, np.float32)[None], format="fltp",
                                       layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=target)
    out = [f.to_ndarray()[0] for f in (*resampler.resample(frame), *resampler.resample(None))]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


class AudioTagger:
    """AudioSet tagger: a waveform in, the most probable sound labels out."""

    def __init__(self, model: torch.nn.Module, feature_extractor: ASTFeatureExtractor,
                 device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.feature_extractor = feature_extractor
        self.device = device
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    @classmethod
    def load(cls, name_or_path: str = "ast-audioset", device: str = "cpu") -> AudioTagger:
        """Load a registry name (``ast-audioset``), hub id or local directory saved with save_pretrained."""
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        dev = resolve_device(device)
        path = resolve_pretrained(name_or_path, "audio")
        try:
            with warnings.catch_warnings():
                # transformers' numpy fbank warns that a mel filter is empty; Kaldi's fbank has it too.
                warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
                extractor = ASTFeatureExtractor.from_pretrained(path)
            model = ASTForAudioClassification.from_pretrained(path)
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(f"cannot load an AST audio tagger from {path}: {err}. Pass a directory saved "
                             "with save_pretrained (model and feature extractor) or a registry name") from err
        return cls(model, extractor, dev)

    @property
    def window_seconds(self) -> float:
        """Length of audio one forward pass sees (10.24 s for the AudioSet model)."""
        return self.feature_extractor.max_length * _FRAME_SHIFT / MODEL_RATE

    def probabilities(self, waveform: np.ndarray, sr: int, batch_size: int = 4) -> np.ndarray:
        """Per-label probability (sigmoid: AudioSet labels are multi-label) for the whole clip.

        A clip longer than the model's window (``window_seconds``) is cut into consecutive full
        windows (the last one ending at the clip's end) and each label keeps its highest probability
        over them; a shorter clip is one window, zero-padded exactly as in SAM-Track.
        """
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim != 1 or waveform.size == 0:
            raise InputError(f"a waveform must be a non-empty 1-D array, got shape {waveform.shape}")
        if sr <= 0:
            raise InputError(f"sample rate must be positive, got {sr}")
        if not np.any(waveform):
            raise InputError("the audio is digital silence (every sample is zero); there is no sound to ground")
        if waveform.size < _FRAME_LENGTH_S * sr:
            raise InputError(f"the audio is {waveform.size / sr * 1000:.1f} ms long; give at least "
                             f"{_FRAME_LENGTH_S * 1000:g} ms")
        rate = self.feature_extractor.sampling_rate
        waveform = resample(waveform, sr, rate)
        win = self.feature_extractor.max_length * rate // 100
        starts = list(range(0, max(waveform.size - win, 0) + 1, win))
        if starts[-1] + win < waveform.size:
            starts.append(waveform.size - win)
        best = None
        for i in range(0, len(starts), batch_size):
            windows = [waveform[s:s + win] for s in starts[i:i + batch_size]]
            features = self.feature_extractor(windows, sampling_rate=rate, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(features["input_values"].to(self.device)).logits
            probs = logits.float().sigmoid().amax(dim=0).cpu().numpy()
            best = probs if best is None else np.maximum(best, probs)
        return best

    def tag(self, waveform: np.ndarray, sr: int, label_num: int = 6,
            threshold: float = 0.05) -> list[tuple[str, float]]:
        """The top ``label_num`` labels whose probability exceeds ``threshold``, most probable first.

        Probabilities are sigmoids of the logits, as in SAM-Track (AST on AudioSet is multi-label, so
        they do not sum to 1). May be empty when no label clears the threshold.
        """
        if label_num < 1:
            raise InputError(f"the number of labels must be >= 1, got {label_num}")
        probs = self.probabilities(waveform, sr)
        order = np.argsort(-probs, kind="stable")[:label_num]
        return [(self.labels[i], float(probs[i])) for i in order if probs[i] > threshold]
