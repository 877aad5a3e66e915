"""Propagator speed and memory: SAM 2.1 (4 sizes), EdgeTAM, R50-DeAOT-L and DeAOT-T side by side.

    .venv/bin/python benchmarks/bench_trackers.py [--frames 500] [--objects 1 5 20] [--models ...]
        [--device cpu] [--threads N] [--timeout S]

Every model is built at its released size with random weights (speed and memory do not depend on
the weights' values): SAM 2.1 / EdgeTAM from their full configurations, DeAOT from the random-weight
official-format checkpoints in ../shared/fixtures/deaot. Each (model, object count) runs in its own
process on DAVIS blackswan at 854x480 (frames looped): frame 0 is the reference with K objects
(tiles of a grid over the frame), then `--frames` frames are tracked with a memory update each.
Printed per cell: median milliseconds per tracked frame (track + update_memory), wall clock and CPU
time of all threads (steadier on a shared machine), the process's peak RSS at the end and its RSS
after every tenth of the frames (a flat tail means bounded memory). Numbers
depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from memory import peak_rss_mb, rss_mb

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FRAMES = SHARED / "data" / "davis2016" / "JPEGImages" / "480p" / "blackswan"
DEAOT = {"r50-deaotl": SHARED / "fixtures" / "deaot" / "r50_deaotl.pth",
         "deaot-t": SHARED / "fixtures" / "deaot" / "deaott.pth"}
MODELS = ("sam2.1-tiny", "sam2.1-small", "sam2.1-base-plus", "sam2.1-large", "edgetam", "r50-deaotl", "deaot-t")


def grid_ids(shape: tuple[int, int], count: int) -> np.ndarray:
    """`count` objects as tiles of a near-square grid covering the frame."""
    rows = int(np.ceil(np.sqrt(count)))
    cols = int(np.ceil(count / rows))
    ids = np.zeros(shape, np.uint8)
    h, w = shape[0] // rows, shape[1] // cols
    for k in range(count):
        r, c = divmod(k, cols)
        ids[r * h + h // 8:(r + 1) * h - h // 8, c * w + w // 8:(c + 1) * w - w // 8] = k + 1
    return ids


def build(name: str, device: str):
    if name in DEAOT:
        from samtrack.models.trackers import load_tracker

        return load_tracker(name, checkpoint=DEAOT[name], device=device)
    from transformers import EdgeTamVideoModel, Sam2VideoModel

    from samtrack.models.sam2video import Sam2VideoTracker
    from samtrack.models.sam2video.configs import full_size_config
    from samtrack.models.sam2video.loading import default_processor

    config = full_size_config(name)
    model = (EdgeTamVideoModel if name == "edgetam" else Sam2VideoModel)(config)
    return Sam2VideoTracker(model, default_processor(config.image_size), device=device)


def worker(name: str, objects: int, frames: int, device: str, threads: int | None) -> dict:
    """One measurement in this process: per-frame latencies and peak RSS."""
    import torch
    from PIL import Image

    if threads:
        torch.set_num_threads(threads)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(FRAMES.glob("*.jpg"))[:50]]
    tracker = build(name, device)
    tracker.add_reference(images[0], grid_ids(images[0].shape[:2], objects))
    times, cpu_times, rss = [], [], []
    every = max(frames // 10, 1)
    for i in range(1, frames + 1):
        start, cpu = time.perf_counter(), time.process_time()
        tracker.update_memory(tracker.track(images[i % len(images)]))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
        if i % every == 0:
            rss.append((i, rss_mb()))
            print(f"    {name} {objects} objects: frame {i}/{frames}, {times[-1]:.2f} s, RSS {rss[-1][1]:.0f} MB",
                  file=sys.stderr, flush=True)
    return {"ms": statistics.median(times) * 1000, "cpu_ms": statistics.median(cpu_times) * 1000,
            "rss_mb": peak_rss_mb(),
            "rss_curve": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500, help="frames tracked per run (peak RSS is after them)")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds allowed per (model, objects) run; slower runs are reported as such")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "OBJECTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker[0], int(args.worker[1]), args.frames, args.device, args.threads)
        print(json.dumps(result))
        return
    results: dict[tuple[str, int], dict | None] = {}
    for name in args.models:
        for count in args.objects:
            cmd = [sys.executable, __file__, "--worker", name, str(count), "--frames", str(args.frames),
                   "--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])
            try:
                # the worker's progress lines go straight to this terminal; its result comes on stdout
                done = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                results[name, count] = None
                print(f"  {name:17s} {count:3d} objects: over {args.timeout:.0f} s", file=sys.stderr, flush=True)
                continue
            if done.returncode != 0:
                sys.exit(f"{name} with {count} objects failed (its error is above)")
            results[name, count] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[name, count]
            curve = " ".join(f"{i}:{mb:.0f}" for i, mb in r["rss_curve"])
            print(f"  {name:17s} {count:3d} objects: {r['ms']:9.1f} ms/frame ({r['cpu_ms']:.1f} ms CPU), "
                  f"peak RSS {r['rss_mb']:7.0f} MB; RSS MB after frame: {curve}", file=sys.stderr, flush=True)
    print(f"\nPer-frame tracking latency, median ms wall (CPU time of all threads), track + update_memory, "
          f"{args.device}, 854x480, {args.frames} frames per run; peak RSS (MB) after them")
    header = "| model | " + " | ".join(f"{k} obj ms" for k in args.objects) + " | " + \
        " | ".join(f"{k} obj RSS MB" for k in args.objects) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(args.objects)))
    for name in args.models:
        runs = [results[name, k] for k in args.objects]
        cells = [f"{r['ms']:.0f} ({r['cpu_ms']:.0f})" if r else "timed out" for r in runs]
        cells += [f"{r['rss_mb']:.0f}" if r else "-" for r in runs]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
