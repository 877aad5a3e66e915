"""Render throughput: `samtrack render` on DAVIS blackswan (50 frames, 854x480), with a per-stage split.

    .venv/bin/python benchmarks/bench_render.py [--sequence blackswan] [--repeats 3]

Prints the time per frame of each stage run on its own (decode a JPEG, read a mask PNG, write a
mask PNG, blend the overlay, H.264 encode, GIF, RLE) and the end-to-end frames/s of the CLI
(median of the repeats). Numbers depend on how busy the CPU is.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from samtrack.cli import main
from samtrack.io.masks import load_id_mask, save_id_mask
from samtrack.io.outputs import _RleCollector
from samtrack.io.overlay import render_overlay
from samtrack.io.sources import open_source
from samtrack.io.video import GifWriter, Mp4Writer

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "davis2016"


def per_frame_ms(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """(wall, CPU) milliseconds per call; CPU time counts every thread and is less noisy on a busy box."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequence", default="blackswan")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    frames_dir = DAVIS / "JPEGImages" / "480p" / args.sequence
    masks_dir = DAVIS / "Annotations" / "480p" / args.sequence
    source = open_source(frames_dir)
    n = len(source)
    frames = list(source)
    masks = [load_id_mask(masks_dir / f"{name}.png") for name in source.names]
    overlays = [render_overlay(f, m) for f, m in zip(frames, masks)]

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        mp4 = Mp4Writer(out / "a.mp4", source.fps, source.width, source.height)
        gif = GifWriter(out / "a.gif", source.fps, source.width, source.height)
        rle = _RleCollector()
        stages = {
            "decode JPEG frame": per_frame_ms(lambda i: source[i], n),
            "read mask PNG": per_frame_ms(lambda i: load_id_mask(masks_dir / f"{source.names[i]}.png"), n),
            "write mask PNG": per_frame_ms(lambda i: save_id_mask(out / f"{i}.png", masks[i]), n),
            "overlay blend+contour": per_frame_ms(lambda i: render_overlay(frames[i], masks[i]), n),
            "H.264 encode": per_frame_ms(lambda i: mp4.write(overlays[i]), n),
            "GIF (every 3rd frame)": per_frame_ms(lambda i: gif.write(overlays[i]), n),
            "COCO RLE": per_frame_ms(lambda i: rle.add(i, source.names[i], masks[i]), n),
        }
        mp4.close()
        gif.close()
        print(f"{args.sequence}: {n} frames, {source.width}x{source.height}")
        print(f"{'stage':<24}{'wall ms/frame':>14}{'CPU ms/frame':>14}")
        for name, (wall, cpu) in stages.items():
            print(f"{name:<24}{wall:>14.1f}{cpu:>14.1f}")
        print(f"{'sum of stages':<24}{sum(w for w, _ in stages.values()):>14.1f}"
              f"{sum(c for _, c in stages.values()):>14.1f}")

        rates, cpu_ms = [], []
        for r in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            code = main(["--quiet", "render", str(frames_dir), str(masks_dir), "--out", str(out / f"run{r}")])
            assert code == 0
            rates.append(n / (time.perf_counter() - wall))
            cpu_ms.append((time.process_time() - cpu) / n * 1000)
        print(f"samtrack render end to end: {statistics.median(rates):.1f} frames/s wall "
              f"(median of {args.repeats}: {', '.join(f'{x:.1f}' for x in rates)}), "
              f"{statistics.median(cpu_ms):.1f} CPU ms/frame")


if __name__ == "__main__":
    main_bench()
