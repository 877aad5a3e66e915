"""Many short videos: a plain loop of `samtrack track` processes vs `samtrack batch --workers 2` on Ray.

    python benchmarks/bench_batch.py                          # 8 DAVIS sequences x 20 frames
    python benchmarks/bench_batch.py --videos 4 --frames 10   # a quicker look

Both arms run the same job per video (automatic mode, DeAOT-T from the parity fixture, the test
suite's tiny random SAM with segment-everything thresholds opened, overlay video on, GIF off). The loop
pays Python start-up, imports and model loading once per video; the batch pays Ray start-up once and
model loading once per worker. The in-run seconds of each video come from its run.json (loop) or
batch.jsonl (batch); what is left of a loop process's wall time is its per-video overhead. A matmul
peak is measured before and after, since this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import matmul_gflops, tiny_sam

ROOT = Path(__file__).resolve().parents[1]
DAVIS = ROOT.parent / "shared" / "data" / "davis2016" / "JPEGImages" / "480p"
DEAOT_T = ROOT.parent / "shared" / "fixtures" / "deaot" / "deaott.pth"
SEQUENCES = ["blackswan", "car-shadow", "motocross-jump", "scooter-black", "libby", "kite-surf",
             "horsejump-high", "drift-straight", "dog", "drift-chicane"]


def samtrack(*argv: str) -> float:
    """Run the samtrack CLI in a fresh process; its wall time in seconds."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "samtrack", "--quiet", *argv], check=True, env=os.environ.copy())
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20, help="frames tracked per video")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="write runs here (default: a temporary folder)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="samtrack-bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    seqs = [DAVIS / s for s in SEQUENCES[:args.videos]]
    options = ["--auto", "--segmenter", tiny_sam(work), "--tracker", "deaot-t", "--checkpoint", str(DEAOT_T),
               "--end", str(args.frames - 1), "--points-per-side", "4", "--pred-iou-thresh", "0",
               "--stability-score-thresh", "0", "--min-area", "20", "--no-gif"]
    frames = args.frames * len(seqs)
    peak_before = matmul_gflops()

    loop_walls, loop_inside = [], []
    for seq in seqs:
        out = work / "loop" / seq.name
        loop_walls.append(samtrack("track", str(seq), "--out", str(out), *options))
        loop_inside.append(json.loads((out / "run.json").read_text())["timings"]["total_seconds"])
        print(f"loop  {seq.name:16s} {loop_walls[-1]:6.1f} s process, {loop_inside[-1]:6.1f} s in the run",
              flush=True)
    loop_wall = sum(loop_walls)

    batch_wall = samtrack("batch", *map(str, seqs), "--out", str(work / "batch"), "--workers", str(args.workers),
                          *options)
    records = [json.loads(line) for line in (work / "batch" / "batch.jsonl").read_text().splitlines()]
    if any(r["status"] != "done" for r in records):
        raise SystemExit(f"batch left inputs unfinished: {records}")
    loads = sum(len(r["models_loaded"]) for r in records)
    peak_after = matmul_gflops()

    overhead = [w - i for w, i in zip(loop_walls, loop_inside)]
    print(f"\n{len(seqs)} videos x {args.frames} frames = {frames} frames; torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs; matmul peak {peak_before:.0f} GFLOP/s before, {peak_after:.0f} after\n")
    print("| run | wall s | frames/s | model loads |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| loop of `samtrack track` processes | {loop_wall:.1f} | {frames / loop_wall:.2f} | {len(seqs) * 2} |")
    print(f"| `samtrack batch --workers {args.workers}` | {batch_wall:.1f} | {frames / batch_wall:.2f} | {loads} |")
    print(f"\nloop: per-video process overhead (start-up, imports, model loads) {sum(overhead) / len(seqs):.1f} s "
          f"(min {min(overhead):.1f}, max {max(overhead):.1f}); in-run {sum(loop_inside):.1f} s of {loop_wall:.1f} s")
    print(f"batch: {loads} model loads for {len(seqs)} videos on {args.workers} workers; per-input seconds "
          f"{sum(r['seconds'] for r in records):.1f} in total; speed-up {loop_wall / batch_wall:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
