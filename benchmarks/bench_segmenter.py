"""Speed of the segmenter with SAM ViT-B at full size (random weights: speed does not depend on them).

On a DAVIS 480p frame (854×480): vision-encoder latency for several CPU configurations (attention
kernel, fp32 / bf16 weights / bf16 autocast, threads), per-click latency once the frame is embedded,
and how much bf16 changes the click logits and masks compared with fp32. Segment-everything has its
own benchmark, bench_everything.py.

    .venv/bin/python benchmarks/bench_segmenter.py [--runs 2] [--parts encoder click bf16] [--threads 2]

The machine may be shared: numbers are the median of ``--runs`` and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import SamConfig, SamImageProcessor, SamModel

from samtrack.models.sam.backends import PromptModel
from samtrack.models.segmenter import Segmenter

FRAME = Path(__file__).resolve().parents[2] / "shared/data/davis2016/JPEGImages/480p/blackswan/00000.jpg"
CLICKS = [(430, 210), (300, 330), (600, 150), (120, 400), (700, 380)]


def sam_vit_b(attn: str = "sdpa") -> SamModel:
    """facebook/sam-vit-base's architecture (SamConfig's defaults) with random weights.

    These random weights shrink the activations layer after layer (the encoder's output is ~1e-19),
    down to subnormal floats, which Intel CPUs compute 15× slower (121 s instead of 8 s per fp32 pass,
    2026-12-02): subnormals are flushed to zero so that the benchmark times the model, not that artifact.
    """
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    return SamModel._from_config(SamConfig(), attn_implementation=attn).eval()


def segmenter(model: SamModel, dtype: torch.dtype = torch.float32, crop_batch_size: int = 1) -> Segmenter:
    return Segmenter(PromptModel(model, SamImageProcessor(), torch.device("cpu"), dtype), crop_batch_size)


def timed(fn: Callable[[], object], runs: int, warm_up: bool = True) -> float:
    """Median seconds of ``runs`` calls (after one warm-up call unless told otherwise)."""
    if warm_up:
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def autocast(enabled: bool) -> Iterator[None]:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
        yield


def bench_encoder(frame: np.ndarray, runs: int, threads: int) -> None:
    print("\n## Vision encoder (ViT-B, 1024×1024 input), one frame")
    print("| configuration | threads | seconds |\n|---|---|---|")
    rows = [
        ("fp32, eager attention", "eager", torch.float32, False, threads),
        ("fp32, SDPA attention (default)", "sdpa", torch.float32, False, threads),
        ("fp32, SDPA attention", "sdpa", torch.float32, False, 1),
        ("bf16 weights, SDPA", "sdpa", torch.bfloat16, False, threads),
        ("fp32 weights + bf16 autocast, SDPA", "sdpa", torch.float32, True, threads),
    ]
    for label, attn, dtype, use_autocast, n_threads in rows:
        torch.set_num_threads(n_threads)
        seg = segmenter(sam_vit_b(attn), dtype)
        with autocast(use_autocast):
            # A full-size encoder pass takes seconds: one-time start-up costs are noise next to it.
            seconds = timed(lambda seg=seg: seg.model.embed([frame]), runs, warm_up=False)
        print(f"| {label} | {n_threads} | {seconds:.2f} |", flush=True)
    torch.set_num_threads(threads)


def bench_click(frame: np.ndarray, runs: int) -> None:
    print("\n## Per prompt, frame already embedded (two-pass SAM-Track refinement)")
    print("| prompt | dtype | ms |\n|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        seg = segmenter(sam_vit_b(), dtype)
        seg.prepare(frame)
        ms = 1000 * timed(lambda seg=seg: seg.click(frame, CLICKS[:2], [1, 0]), runs * 3)
        print(f"| click (2 points) | {str(dtype)[6:]} | {ms:.0f} |")
        ms = 1000 * timed(lambda seg=seg: seg.box(frame, (300, 120, 600, 380)), runs * 3)
        print(f"| box | {str(dtype)[6:]} | {ms:.0f} |", flush=True)


def click_logits(seg: Segmenter, frame: np.ndarray, point: tuple[int, int]) -> torch.Tensor:
    """First-pass multimask low-resolution logits of one positive click."""
    seg.prepare(frame)
    embedding = seg._cache.frame
    xy = seg.model.to_model_coords(torch.tensor([[point]], dtype=torch.float64), embedding)
    return seg.model.decode(embedding, xy, torch.ones(1, 1))[0]


def bench_bf16_agreement(frame: np.ndarray) -> None:
    print("\n## bf16 vs fp32 (same random ViT-B weights): first-pass click logits, final click masks")
    print("| click | max abs logit diff | mean abs diff | fp32 logit std | mask pixel agreement |")
    print("|---|---|---|---|---|")
    model = sam_vit_b()
    fp32 = segmenter(model, torch.float32)
    reference = {p: (click_logits(fp32, frame, p), fp32.click(frame, [p], [1])) for p in CLICKS}
    bf16 = segmenter(model, torch.bfloat16)  # the same weights, cast
    for point, (ref_logits, ref_mask) in reference.items():
        diff = (click_logits(bf16, frame, point) - ref_logits).abs()
        agree = (bf16.click(frame, [point], [1]) == ref_mask).mean()
        print(f"| {point} | {diff.max():.3f} | {diff.mean():.4f} | {ref_logits.std():.3f} | {agree:.4%} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--parts", nargs="+", default=["encoder", "click", "bf16"], choices=["encoder", "click", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = np.array(Image.open(FRAME).convert("RGB"))
    print(f"# SAM ViT-B segmenter, {frame.shape[1]}×{frame.shape[0]} frame, torch {torch.__version__}, "
          f"{args.threads} threads, median of {args.runs}")
    with torch.inference_mode():
        if "encoder" in args.parts:
            bench_encoder(frame, args.runs, args.threads)
        if "click" in args.parts:
            bench_click(frame, args.runs)
        if "bf16" in args.parts:
            bench_bf16_agreement(frame)


if __name__ == "__main__":
    main()
