"""SAM 3 concept tracking (`ConceptTracker`): seconds per frame with 1 / 5 / 20 objects, fp32 and bf16,
peak RSS, and RSS / held tensor bytes along the video.

    .venv/bin/python benchmarks/bench_sam3_concept.py [--size full|tiny] [--frames 9] [--objects 1 5 20]
        [--precisions fp32 bf16] [--every 1] [--threads N] [--timeout S]

``--size full`` builds SAM 3 at its released size (``Sam3VideoConfig()``'s defaults, 860 M parameters)
with random weights in code (speed and memory do not depend on the weights' values; the hub's CLIP
vocabulary is not on this machine, so the text goes through the tests' byte-level tokenizer, which
changes no shape); ``--size tiny`` loads the tests' tiny checkpoint through ``load_sam3``.

Random weights find nothing at SAM 3's thresholds and lose every object after a frame, so the object
count is steered at the model's output seams (tests/sam3_scene.py, ``real=True``): the real detector
and the real tracker run in full on every frame, then their outputs are replaced by K disjoint boxes
(a grid over the low-resolution mask) -- the detector's on the caption's prompt, the tracker's for the
objects bound to them -- so that SAM 3's NMS, association and hotstart keep exactly K objects alive and
tracked. Each (precision, K) runs in its own process on DAVIS blackswan frames (854x480, looped).

Printed per run: seconds for frame 0 (detection and K new objects), the mean of frames 1-6 (the
tracker's memory bank filling: 6 past frames), the median of frames 7 on (steady state; the median
CPU time of all threads beside it), the process's peak RSS, and RSS and the bytes of tensors the
tracker holds (`ConceptTracker.held`) every ``--every`` frames. Timings depend on how busy the machine
is: the fp32 and bf16 matmul peaks measured at the start are printed beside them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from machine import ROOT, matmul_gflops
from memory import peak_rss_mb, rss_mb

sys.path.insert(0, str(ROOT / "tests"))  # the tests' tiny checkpoint, tokenizer and scripted scene
FRAMES = ROOT.parent / "shared" / "data" / "davis2016" / "JPEGImages" / "480p" / "blackswan"
STEADY_FROM = 7  # the first frame whose tracker attends to a full memory bank (num_maskmem - 1 = 6 past frames)


def full_size_weights(precision: str):
    """SAM 3 at its released size, random weights, with a processor (1008² input, 288² masks)."""
    import torch
    from sam3_tiny import tiny_clip_tokenizer
    from transformers import (
        Sam2VideoVideoProcessor,
        Sam3ImageProcessor,
        Sam3VideoConfig,
        Sam3VideoModel,
        Sam3VideoProcessor,
    )

    from samtrack.models.common import TORCH_DTYPES
    from samtrack.models.sam3 import Sam3Weights

    tokenizer = tiny_clip_tokenizer()
    specials = {"bos_token_id": len(tokenizer) - 2, "eos_token_id": len(tokenizer) - 1,
                "pad_token_id": len(tokenizer) - 1}
    config = Sam3VideoConfig(detector_config={"model_type": "sam3",
                                              "text_config": {"model_type": "clip_text_model", **specials}})
    torch.manual_seed(0)
    model = Sam3VideoModel(config).eval().to(TORCH_DTYPES[precision])
    video = Sam2VideoVideoProcessor(size={"height": 1008, "width": 1008}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Sam3VideoProcessor(image_processor=Sam3ImageProcessor(), video_processor=video, tokenizer=tokenizer)
    return Sam3Weights("concept", model, processor, torch.device("cpu"), precision, "sam3_video", "random full size")


def tiny_weights(precision: str):
    from sam3_tiny import save_tiny_sam3_video

    from samtrack.models.sam3 import load_sam3

    folder = Path(tempfile.mkdtemp(prefix="tiny-sam3-"))
    return load_sam3(str(save_tiny_sam3_video(folder)), "concept", device="cpu", precision=precision)


def grid_blobs(side: int, count: int) -> list:
    """`count` disjoint boxes on a near-square grid over a side×side mask, all of category "swan"."""
    from sam3_scene import Blob

    rows = int(np.ceil(np.sqrt(count)))
    cols = int(np.ceil(count / rows))
    h, w = side // rows, side // cols
    return [Blob(f"obj-{k}", "swan", (r * h + h // 8, c * w + w // 8, (r + 1) * h - h // 8, (c + 1) * w - w // 8))
            for k, (r, c) in enumerate(divmod(k, cols) for k in range(count))]


def worker(size: str, precision: str, objects: int, frames: int, every: int, threads: int | None) -> dict:
    """One run in this process: per-frame seconds, RSS and held bytes, peak RSS."""
    import torch
    from PIL import Image

    from samtrack.models.sam3.concept import ConceptTracker

    if threads:
        torch.set_num_threads(threads)
    # random weights drive activations into subnormal floats, which x86 CPUs compute far slower
    torch.set_flush_denormal(True)
    images = [np.array(Image.open(p).convert("RGB")) for p in sorted(FRAMES.glob("*.jpg"))[:50]]
    from sam3_scene import Scene

    weights = full_size_weights(precision) if size == "full" else tiny_weights(precision)

    blobs = grid_blobs(weights.model.low_res_mask_size, objects)
    Scene(weights.model, weights.processor, lambda i: blobs, real=True).install(SimpleNamespace(setattr=setattr))
    tracker = ConceptTracker(weights, "swan")
    times, cpu_times, curve, counts = [], [], [], []
    for i in range(frames):
        start, cpu = time.perf_counter(), time.process_time()
        final = tracker.push(i, images[i % len(images)])
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
        counts += [len(f.objects) for f in final]
        if (i + 1) % every == 0 or i == frames - 1:
            curve.append((i + 1, rss_mb(), tracker.held().bytes / 2**20))
            print(f"    {size} {precision} {objects} objects: frame {i + 1}/{frames} {times[-1]:.2f} s, "
                  f"RSS {curve[-1][1]:.0f} MB, held {curve[-1][2]:.2f} MB", file=sys.stderr, flush=True)
    counts += [len(f.objects) for f in tracker.finish()]
    steady = times[STEADY_FROM:] or times[-1:]
    return {"first": times[0], "filling": statistics.mean(times[1:STEADY_FROM] or times[:1]),
            "steady": statistics.median(steady), "steady_cpu": statistics.median(cpu_times[STEADY_FROM:] or
                                                                                 cpu_times[-1:]),
            "steady_frames": len(times[STEADY_FROM:]), "peak_rss_mb": peak_rss_mb(), "curve": curve,
            "objects_per_frame": sorted(set(counts))}


def cpu_note() -> str:
    import torch

    try:
        with open("/proc/cpuinfo") as info:
            flags = set(next((line for line in info if line.startswith("flags")), "").split())
    except OSError:
        flags = set()
    return (f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, AMX "
            f"{'yes' if 'amx_bf16' in flags else 'no'}, AVX512-BF16 {'yes' if 'avx512_bf16' in flags else 'no'}, "
            f"{torch.get_num_threads()} threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--frames", type=int, default=STEADY_FROM + 2)
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--every", type=int, default=1, help="print RSS and held bytes every N frames")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per run")
    parser.add_argument("--worker", nargs=2, metavar=("PRECISION", "OBJECTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.size, args.worker[0], int(args.worker[1]), args.frames, args.every, args.threads)
        print(json.dumps(result))
        return
    print(f"matmul peak: fp32 {matmul_gflops(dtype='float32'):.0f} GFLOP/s, bf16 "
          f"{matmul_gflops(dtype='bfloat16'):.0f} GFLOP/s; {cpu_note()}", flush=True)
    rows = []
    for count in args.objects:  # both precisions of a count first: a cut-short run still compares them
        for precision in args.precisions:
            cmd = [sys.executable, __file__, "--worker", precision, str(count), "--size", args.size,
                   "--frames", str(args.frames), "--every", str(args.every)]
            cmd += ["--threads", str(args.threads)] if args.threads else []
            try:
                done = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                rows.append(f"| {precision} | {count} | over {args.timeout:.0f} s | | | | |")
                print(rows[-1], flush=True)
                continue
            if done.returncode != 0:
                sys.exit(f"{precision} with {count} objects failed (its error is above)")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            curve = " ".join(f"{i}:{rss:.0f}/{held:.2f}" for i, rss, held in r["curve"])
            rows.append(f"| {precision} | {count} | {r['first']:.2f} | {r['filling']:.2f} | {r['steady']:.2f} "
                        f"({r['steady_cpu']:.2f} CPU, {r['steady_frames']} frames) | {r['peak_rss_mb']:.0f} | "
                        f"{r['objects_per_frame']} |")
            print(rows[-1], flush=True)
            print(f"    RSS MB / held MB after frame: {curve}", flush=True)
    print(f"\nSAM 3 concept tracking, {args.size} size, random weights, CPU, 854x480 frames, caption 'swan', "
          f"{args.frames} frames per run; seconds per frame (push: detect, track, post-process)")
    print("| precision | objects | frame 0 s | frames 1-6 s | steady s/frame | peak RSS MB | objects per final frame |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
