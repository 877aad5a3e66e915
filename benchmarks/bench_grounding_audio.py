"""Latency of text and audio grounding at full model size (random weights: speed does not depend on them).

Grounding DINO tiny (Swin-T backbone, BERT-base text encoder, 900 queries, the hub model's config) on a
DAVIS 480p frame, fp32 and bf16 autocast; AST (AudioSet, base size) on a 10 s clip.

    .venv/bin/python benchmarks/bench_grounding_audio.py [--runs 3] [--dtypes float32 bfloat16]
        [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from samtrack.models.audio import AudioTagger
from samtrack.models.common import resolve_device
from samtrack.models.grounding import Detector

FRAME = Path(__file__).resolve().parents[2] / "shared/data/davis2016/JPEGImages/480p/blackswan/00000.jpg"
CAPTION = "swan. water"
# Words of the captions used here; the text encoder keeps BERT-base's 30522-row embedding table.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "swan", "water", "black", "bird"]


def grounding_dino_tiny(device: str, dtype: str) -> Detector:
    """IDEA-Research/grounding-dino-tiny's architecture with random weights and its preprocessing."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                          out_features=["stage2", "stage3", "stage4"])
    text = BertConfig()  # bert-base-uncased: 12 layers, 768 wide
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, num_queries=900, d_model=256,
                                 encoder_layers=6, decoder_layers=6, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                                 num_feature_levels=4, max_text_len=256)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.txt"
        vocab.write_text("\n".join(VOCAB) + "\n")
        tokenizer = BertTokenizer(vocab=str(vocab))
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333}),
        tokenizer=tokenizer)
    return Detector(GroundingDinoForObjectDetection(config), processor, resolve_device(device), dtype)


def ast_audioset(device: str) -> AudioTagger:
    """MIT/ast-finetuned-audioset-10-10-0.4593's architecture (ViT-B, 1024×128 fbank, 527 labels)."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(num_labels=527, id2label={i: f"label {i}" for i in range(527)})
    return AudioTagger(ASTForAudioClassification(config), ASTFeatureExtractor(), resolve_device(device))


def timed(fn: Callable[[], object], runs: int, device: str) -> list[float]:
    """Seconds per call after one warm-up call (each printed as it comes: CPU runs are slow)."""
    start = time.perf_counter()
    fn()
    print(f"  warm-up {time.perf_counter() - start:.3f} s", flush=True)
    times = []
    for _ in range(runs):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        print(f"  run {len(times)} {times[-1]:.3f} s", flush=True)
    return times


def report(name: str, times: list[float]) -> None:
    print(f"{name:<44} median {statistics.median(times):7.3f} s   min {min(times):7.3f} s   "
          f"({len(times)} runs)", flush=True)


def bench_detector(frame: np.ndarray, args: argparse.Namespace) -> None:
    detector = grounding_dino_tiny(args.device, "float32")
    params = sum(p.numel() for p in detector.model.parameters()) / 1e6
    print(f"Grounding DINO tiny: {params:.1f} M parameters, caption {CAPTION!r}", flush=True)
    for dtype in args.dtypes:
        detector.dtype = dtype
        report(f"grounding-dino-tiny 480p frame, {dtype}",
               timed(lambda: detector.detect(frame, CAPTION), args.runs, args.device))


def bench_audio(args: argparse.Namespace, seconds: float = 10.0) -> None:
    tagger = ast_audioset(args.device)
    params = sum(p.numel() for p in tagger.model.parameters()) / 1e6
    t = np.arange(int(seconds * 16_000)) / 16_000
    clip = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).normal(size=t.size))
    clip = clip.astype(np.float32)
    print(f"AST AudioSet: {params:.1f} M parameters, window {tagger.window_seconds:.2f} s", flush=True)
    report(f"ast-audioset {seconds:g} s clip (decode excluded), fp32",
           timed(lambda: tagger.tag(clip, 16_000), args.runs, args.device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up run")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                        help="Grounding DINO precisions to time (bf16 is slow on CPUs without bf16 units)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frame = np.array(Image.open(FRAME).convert("RGB"))
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"frame {frame.shape[1]}×{frame.shape[0]}", flush=True)

    bench_detector(frame, args)
    bench_audio(args)


if __name__ == "__main__":
    main()
