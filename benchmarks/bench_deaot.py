"""DeAOT tracker speed and memory on CPU: per-frame latency and peak memory.

Speed does not depend on the weights' values, so the networks are built with random weights at
full size. Frames are DAVIS blackswan (480 x 854); the id mask has N vertical stripes.

    .venv/bin/python benchmarks/bench_deaot.py                     # full table (slow)
    .venv/bin/python benchmarks/bench_deaot.py --frames 3 --memory-frames 50 --models deaot-t

Latency: median seconds per frame of ``track`` + ``update_memory`` after one warm-up frame.
Peak memory: max RSS of a fresh process after tracking ``--memory-frames`` frames, with SAM-Track's
default memory (gap 9999), with a long-term frame every 5 frames and no cap, and capped at 10.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FRAMES = ROOT.parent / "shared" / "data" / "davis2016" / "JPEGImages" / "480p" / "blackswan"


def load_frames(n: int) -> list[np.ndarray]:
    files = sorted(FRAMES.glob("*.jpg"))
    return [np.array(Image.open(files[i % len(files)]).convert("RGB")) for i in range(n)]


def stripes(shape: tuple[int, int], n: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for i, cols in enumerate(np.array_split(np.arange(shape[1]), n)):
        mask[40:, cols] = i + 1
    return mask


def build(name: str, precision: str, gap: int = 9999, cap: int = 9999):
    from samtrack.models.deaot.config import get_variant
    from samtrack.models.deaot.network import AOTNetwork
    from samtrack.models.deaot.tracker import DeAOTTracker

    torch.manual_seed(0)
    return DeAOTTracker(AOTNetwork(get_variant(name)), "cpu", gap, cap, precision)


def latency(name: str, objects: int, precision: str, frames: list[np.ndarray]) -> float:
    trk = build(name, precision)
    trk.add_reference(frames[0], stripes(frames[0].shape[:2], objects))
    times = []
    for frame in frames[1:]:
        start = time.perf_counter()
        trk.update_memory(trk.track(frame))
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:] if len(times) > 1 else times)


def memory_worker(name: str, n: int, gap: int, cap: int) -> None:
    frames = load_frames(min(n, 50) + 1)
    trk = build(name, "fp32", gap, cap)
    trk.add_reference(frames[0], stripes(frames[0].shape[:2], 2))
    for i in range(n):
        trk.update_memory(trk.track(frames[1 + i % (len(frames) - 1)]))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak_mb, "long_term_frames": trk.engines[0].long_term_frames}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["deaot-t", "r50-deaotl"])
    parser.add_argument("--objects", nargs="+", type=int, default=[1, 5, 20])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--frames", type=int, default=5, help="timed frames per setting")
    parser.add_argument("--memory-frames", type=int, default=500, help="frames tracked for the peak memory (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-worker", nargs=4, metavar=("MODEL", "N", "GAP", "CAP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        name, n, gap, cap = args.memory_worker
        memory_worker(name, int(n), int(gap), int(cap))
        return

    frames = load_frames(args.frames + 2)
    print(f"torch {torch.__version__}, {args.threads} threads, frames {frames[0].shape[1]}x{frames[0].shape[0]}")
    print(f"{'model':<12} {'objects':>7} {'precision':>9} {'s/frame':>8}")
    for name in args.models:
        for objects in args.objects:
            for precision in args.precisions:
                seconds = latency(name, objects, precision, frames)
                print(f"{name:<12} {objects:>7} {precision:>9} {seconds:>8.3f}", flush=True)

    if args.memory_frames > 0:
        print(f"\npeak memory after {args.memory_frames} frames (2 objects, fp32)")
        print(f"{'model':<12} {'long-term memory':<28} {'frames kept':>11} {'peak MB':>8}")
        for name in args.models:
            for label, gap, cap in (("SAM-Track default (gap 9999)", 9999, 9999),
                                    ("every 5 frames, no cap", 5, 9999), ("every 5 frames, cap 10", 5, 10)):
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--memory-worker", name,
                       str(args.memory_frames), str(gap), str(cap)]
                result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                print(f"{name:<12} {label:<28} {result['long_term_frames']:>11} {result['peak_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
