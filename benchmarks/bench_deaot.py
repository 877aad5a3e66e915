"""DeAOT tracker speed and memory on CPU: per-frame latency and peak memory.

Speed does not depend on the weights' values, so the networks are built with random weights at
full size. Frames are DAVIS blackswan (480 x 854); the id mask has N vertical stripes.

    .venv/bin/python benchmarks/bench_deaot.py                     # full table (slow)
    .venv/bin/python benchmarks/bench_deaot.py --frames 3 --memory-frames 50 --models deaot-t
    .venv/bin/python benchmarks/bench_deaot.py --frames 0 --memory-frames 0 --agreement   # bf16 labels

Latency: median seconds per frame of ``track`` + ``update_memory`` after one warm-up frame.
Peak memory: max RSS of a fresh process after tracking ``--memory-frames`` frames, with SAM-Track's
default memory (gap 9999: after the reference no frame joins the long-term memory) and with a
long-term frame every 5 frames capped at 10 frames.
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
import torch
from memory import peak_rss_mb
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DAVIS = ROOT.parent / "shared" / "data" / "davis2016"
FRAMES = DAVIS / "JPEGImages" / "480p" / "blackswan"
FIXTURES = ROOT.parent / "shared" / "fixtures" / "deaot"


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


def label_agreement(precision: str) -> None:
    """Replay every parity fixture case (teacher-forced as in tests/test_deaot_parity.py) at
    `precision` and compare its labels with the official fp32 labels."""
    from samtrack.models.trackers import load_tracker

    print(f"\n{precision} labels vs the official fp32 labels on the parity fixtures (random weights: many "
          "near-ties, so this is a lower bound for trained weights)")
    print(f"{'case':<36} {'pixels agree':>12} {'where fp32 margin > 0.1':>24}")
    for case_dir in sorted(FIXTURES.glob("*/*/expected.npz")):
        variant, case = case_dir.parent.parent.name, case_dir.parent.name
        z = np.load(case_dir)
        meta = json.loads(str(z["meta_json"]))
        trk = load_tracker(variant, FIXTURES / f"{variant}.pth", long_term_mem_gap=meta["long_term_mem_gap"],
                           max_len_long_term=meta["max_len_long_term"], precision=precision)
        refs = {int(f): i for i, f in enumerate(z["ref_frame_indices"])}
        tracked = {int(f): i for i, f in enumerate(z["tracked_frame_indices"])}
        agree = total = agree_decisive = decisive_total = 0
        for f, path in enumerate(z["frame_files"]):
            frame = np.array(Image.open(DAVIS / str(path)).convert("RGB"))
            if f in tracked:
                labels, logits = trk.track(frame, return_logits=True)
                expected = z["labels"][tracked[f]]
                top2 = np.sort(logits, axis=0)[-2:]
                decisive = (top2[1] - top2[0]) > 0.1
                same = labels == expected
                agree, total = agree + int(same.sum()), total + same.size
                agree_decisive += int(same[decisive].sum())
                decisive_total += int(decisive.sum())
            if f in refs:
                trk.add_reference(frame, z["ref_masks"][refs[f]])
            elif f in tracked:
                trk.update_memory(z["labels"][tracked[f]])
        print(f"{variant + '/' + case:<36} {100 * agree / total:>11.2f}% "
              f"{100 * agree_decisive / max(decisive_total, 1):>23.2f}%", flush=True)


def memory_worker(name: str, n: int, gap: int, cap: int) -> None:
    frames = load_frames(min(n, 50) + 1)
    trk = build(name, "fp32", gap, cap)
    trk.add_reference(frames[0], stripes(frames[0].shape[:2], 2))
    for i in range(n):
        trk.update_memory(trk.track(frames[1 + i % (len(frames) - 1)]))
    peak_mb = peak_rss_mb()
    print(json.dumps({"peak_mb": peak_mb, "long_term_frames": trk.engines[0].long_term_frames}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["deaot-t", "r50-deaotl"])
    parser.add_argument("--objects", nargs="+", type=int, default=[1, 5, 20])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--frames", type=int, default=5, help="timed frames per setting (0: skip latency)")
    parser.add_argument("--memory-frames", type=int, default=500, help="frames tracked for the peak memory (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--agreement", action="store_true",
                        help="also replay the parity fixtures in each non-fp32 precision and compare labels")
    parser.add_argument("--memory-worker", nargs=4, metavar=("MODEL", "N", "GAP", "CAP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        name, n, gap, cap = args.memory_worker
        memory_worker(name, int(n), int(gap), int(cap))
        return

    print(f"torch {torch.__version__}, {args.threads} threads, frames 854x480")
    if args.frames > 0:
        frames = load_frames(args.frames + 2)
        print(f"{'model':<12} {'objects':>7} {'precision':>9} {'s/frame':>8}")
        for name in args.models:
            for objects in args.objects:
                for precision in args.precisions:
                    seconds = latency(name, objects, precision, frames)
                    print(f"{name:<12} {objects:>7} {precision:>9} {seconds:>8.3f}", flush=True)

    if args.agreement:
        for precision in args.precisions:
            if precision != "fp32":
                label_agreement(precision)

    if args.memory_frames > 0:
        print(f"\npeak memory after {args.memory_frames} frames (2 objects, fp32)")
        print(f"{'model':<12} {'long-term memory':<28} {'frames kept':>11} {'peak MB':>8}")
        for name in args.models:
            for label, gap, cap in (("SAM-Track default (gap 9999)", 9999, 9999), ("every 5 frames, cap 10", 5, 10)):
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--memory-worker", name,
                       str(args.memory_frames), str(gap), str(cap)]
                result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                print(f"{name:<12} {label:<28} {result['long_term_frames']:>11} {result['peak_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
