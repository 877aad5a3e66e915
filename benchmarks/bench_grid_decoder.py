"""Segment-everything's mask decoder alone: the model's own forward vs samtrack's grid decoder.

One batch of single-point prompts (SAM-Track's ``points_per_batch`` is 64) on one image of SAM 2.1
tiny or EdgeTAM at full size with random weights (speed does not depend on the values), decoded by
``plain_grid_decoder`` (transformers' forward: image embedding and high-resolution features repeated per
prompt) and by the model's ``grid_decoder`` (``grid_decoder.py``: image-side work once per image). No
IoU threshold, so both compute every prompt's masks. The two run interleaved in one process, and the
machine's matmul peak is printed beside the times; ``--profile`` adds torch.profiler's top operators.

    python benchmarks/bench_grid_decoder.py                         # sam2.1-tiny and edgetam, 64 prompts
    python benchmarks/bench_grid_decoder.py --models edgetam --prompts 64 --repeats 5 --profile
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_everything import sam2_family
from machine import matmul_gflops

from samtrack.models.sam.backends import Embedding, plain_grid_decoder


def random_embedding(model) -> Embedding:
    """Unit-scale features of the shapes the encoder gives for one 1024² image."""
    side = model.model.prompt_encoder.image_embedding_size[0]
    width = model.model.config.mask_decoder_config.hidden_size
    shapes = [(width // 8, 4 * side), (width // 4, 2 * side), (width, side)]
    return Embedding(([torch.randn(1, c, s, s) for c, s in shapes],), [(1024, 1024)], [(480, 854)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["sam2.1-tiny", "edgetam"], choices=["sam2.1-tiny", "edgetam"])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators per decoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak_before = matmul_gflops(2048, 5, "float32")
    print(f"# mask decoder, {args.prompts} single-point prompts, fp32, torch {torch.__version__}, "
          f"{args.threads} threads, median of {args.repeats}\n")
    rows = []
    for name in args.models:
        model = sam2_family(name).model
        torch.manual_seed(0)
        embedding = random_embedding(model)
        points = torch.rand(args.prompts, 2) * 1024
        decoders = {"plain": plain_grid_decoder(model, embedding), "grid": model.grid_decoder(embedding)}
        outputs = {impl: decode(points, None) for impl, decode in decoders.items()}  # warm-up
        diff = float((outputs["grid"][0] - outputs["plain"][0]).abs().max())
        scale = float(outputs["plain"][0].abs().max())
        times: dict[str, list[float]] = {impl: [] for impl in decoders}
        for _ in range(args.repeats):
            for impl, decode in decoders.items():
                start = time.perf_counter()
                decode(points, None)
                times[impl].append(time.perf_counter() - start)
        plain, grid = (statistics.median(times[impl]) for impl in ("plain", "grid"))
        rows.append(f"| {name} | {plain:.2f} | {grid:.2f} | {plain / grid:.1f}× | {diff:.1e} / {scale:.1e} |")
        if args.profile:
            for impl, decode in decoders.items():
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                    decode(points, None)
                print(f"## {name} {impl}\n{prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=12)}")
    peak_after = matmul_gflops(2048, 5, "float32")
    print(f"matmul peak (2048² fp32 products): {peak_before:.0f} → {peak_after:.0f} GFLOP/s (before → after)\n")
    print("| model | plain forward s | grid decoder s | speed-up | max abs logit diff / max abs logit |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
