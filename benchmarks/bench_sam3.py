"""Speed of SAM 3 at full size (random weights: speed does not depend on them), beside Grounding DINO + SAM.

On a DAVIS 480p frame (854×480), fp32 and bf16:
- the SAM 3 text detector per frame: one caption of two categories ("swan. water"), one image encoding
  shared by both (:class:`samtrack.models.sam3.detector.Sam3Detector`, weights in the precision);
- the SAM 3 tracker per frame with 1 and 5 objects (samtrack's SAM 2 family tracker over
  ``Sam3TrackerVideoModel``, fp32 weights under autocast as the product runs it): track + memory update;
- for comparison, SAM-Track's text path: Grounding DINO tiny on the frame, then SAM ViT-B (encoder
  once, one box prompt per category).

The architectures are transformers' default SAM 3 configuration (facebook/sam3: ViT-L/14 at 1008²,
CLIP-L text encoder, DETR head with 200 queries; the tracker's own neck on the shared ViT), built in
code: no download. The tokenizer is the tests' in-code CLIP tokenizer (every caption is padded to 32
tokens, so its vocabulary does not change the cost).

    .venv/bin/python benchmarks/bench_sam3.py [--runs 1] [--precisions fp32 bf16] [--threads N]
        [--parts detector tracker baseline]

The machine may be shared: every time comes with the matmul peaks measured just before it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_grounding_audio import grounding_dino_tiny
from bench_segmenter import sam_vit_b, segmenter
from machine import matmul_gflops
from sam3_tiny import tiny_clip_tokenizer

from samtrack.models.common import TORCH_DTYPES
from samtrack.models.sam2video import Sam2VideoTracker
from samtrack.models.sam3.detector import Sam3Detector
from samtrack.models.sam3.loading import Sam3Weights

FRAMES = Path(__file__).resolve().parents[2] / "shared/data/davis2016/JPEGImages/480p/blackswan"
CAPTION = "swan. water"
BOXES = [(380, 140, 560, 330), (0, 300, 854, 480)]  # one box prompt per category for SAM ViT-B


def cpu_flags() -> set[str]:
    try:
        return set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                        if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return set()


def machine_line() -> str:
    flags = cpu_flags()
    amx = "yes" if "amx_bf16" in flags or "AMX" in torch.backends.cpu.get_cpu_capability().upper() else "no"
    return (f"matmul peaks now: fp32 {matmul_gflops():.0f} GFLOP/s, bf16 {matmul_gflops(dtype='bfloat16'):.0f} "
            f"GFLOP/s; AMX {amx}, avx512_bf16 {'yes' if 'avx512_bf16' in flags else 'no'}, "
            f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}")


def full_size_sam3() -> tuple[torch.nn.Module, torch.nn.Module, object, object]:
    """facebook/sam3's detector (Sam3Model) and tracker (Sam3TrackerVideoModel) with random weights, the
    tracker reading the detector's ViT backbone as the one checkpoint does, plus their processors."""
    from transformers import (
        Sam2VideoVideoProcessor,
        Sam3Config,
        Sam3ImageProcessor,
        Sam3Model,
        Sam3Processor,
        Sam3TrackerVideoConfig,
        Sam3TrackerVideoModel,
        Sam3TrackerVideoProcessor,
    )

    # Random weights shrink activations layer after layer down to subnormal floats, which some CPUs
    # compute many times slower: flushed, so that the benchmark times the model, not that artifact.
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    detector = Sam3Model(Sam3Config()).eval()
    tracker = Sam3TrackerVideoModel(Sam3TrackerVideoConfig(), remove_vision_encoder=True)
    tracker.vision_encoder = type(detector.vision_encoder)(tracker.config.vision_config)
    tracker.vision_encoder.backbone = detector.vision_encoder.backbone  # shared, as in facebook/sam3
    tracker.eval()
    image = Sam3ImageProcessor()  # 1008², mean/std 0.5
    video = Sam2VideoVideoProcessor(size={"height": 1008, "width": 1008}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return (detector, tracker, Sam3Processor(image_processor=image, tokenizer=tiny_clip_tokenizer()),
            Sam3TrackerVideoProcessor(image_processor=image, video_processor=video))


def timed(fn: Callable[[], object], runs: int) -> float:
    """Median seconds of `runs` calls after one warm-up call (each printed as it comes: CPU runs are slow)."""
    start = time.perf_counter()
    fn()
    print(f"    warm-up {time.perf_counter() - start:.1f} s", flush=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        print(f"    run {len(times)} {times[-1]:.1f} s", flush=True)
    return statistics.median(times)


def reference_ids(shape: tuple[int, int], objects: int) -> np.ndarray:
    """An id mask of `objects` separate rectangles."""
    ids = np.zeros(shape, np.uint8)
    width = shape[1] // objects
    for i in range(objects):
        ids[shape[0] // 4: 3 * shape[0] // 4, i * width + width // 4: i * width + 3 * width // 4] = i + 1
    return ids


def bench_tracker(tracker, processor, frames: list[np.ndarray], args, rows: list[tuple]) -> None:
    for precision in args.precisions:
        for objects in (1, 5):
            print(f"  SAM 3 tracker, {objects} object(s), {precision} ({machine_line()})", flush=True)
            trk = Sam2VideoTracker(tracker, processor, device="cpu", precision=precision)
            trk.add_reference(frames[0], reference_ids(frames[0].shape[:2], objects))
            step = iter(frames[1:])

            def one_frame(trk=trk, step=step) -> None:
                trk.update_memory(trk.track(next(step)))

            seconds = timed(one_frame, args.runs)
            rows.append((f"SAM 3 tracker, {objects} object(s): track + memory update", precision, seconds))


def bench_detector(detector, processor, frame: np.ndarray, args, rows: list[tuple]) -> None:
    for precision in args.precisions:
        detector.to(TORCH_DTYPES[precision])  # the loader loads the detector's weights in its precision
        sam3 = Sam3Detector(Sam3Weights("detector", detector, processor, torch.device("cpu"), precision,
                                        "sam3_video", "random full-size"))
        print(f"  SAM 3 detector, {precision} ({machine_line()})", flush=True)
        seconds = timed(lambda sam3=sam3: sam3.detect(frame, CAPTION, score_threshold=0.5), args.runs)
        rows.append((f"SAM 3 detector, caption {CAPTION!r} (2 categories)", precision, seconds))


def bench_baseline(frame: np.ndarray, args, rows: list[tuple]) -> None:
    """Grounding DINO tiny on the frame, then SAM ViT-B: one encoder pass and one box prompt per category."""
    for precision in args.precisions:
        dino = grounding_dino_tiny("cpu", "float32" if precision == "fp32" else "bfloat16")
        seg = segmenter(sam_vit_b(), TORCH_DTYPES[precision])
        print(f"  Grounding DINO tiny + SAM ViT-B, {precision} ({machine_line()})", flush=True)
        dino_s = timed(lambda dino=dino: dino.detect(frame, CAPTION), args.runs)

        def sam_boxes(seg=seg) -> None:
            seg._cache = None  # a new frame: the encoder runs
            for box in BOXES:
                seg.box(frame, box)

        sam_s = timed(sam_boxes, args.runs)
        rows.append(("Grounding DINO tiny (frame, caption)", precision, dino_s))
        rows.append((f"SAM ViT-B encoder + {len(BOXES)} box prompts", precision, sam_s))
        rows.append(("Grounding DINO tiny + SAM ViT-B, per frame", precision, dino_s + sam_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="timed runs after one warm-up run")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--parts", nargs="+", default=["tracker", "detector", "baseline"],
                        choices=["tracker", "detector", "baseline"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = sorted(FRAMES.glob("*.jpg"))[: args.runs + 3]
    frames = [np.array(Image.open(p).convert("RGB")) for p in paths]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, frame {frames[0].shape[1]}×"
          f"{frames[0].shape[0]}\n{machine_line()}", flush=True)
    rows: list[tuple] = []
    if {"tracker", "detector"} & set(args.parts):
        start = time.perf_counter()
        detector, tracker, processor, tracker_processor = full_size_sam3()
        unique = {id(p): p.numel() for m in (detector, tracker) for p in m.parameters()}
        print(f"SAM 3 built in {time.perf_counter() - start:.0f} s: {sum(unique.values()) / 1e6:.0f} M parameters "
              f"(detector {sum(p.numel() for p in detector.parameters()) / 1e6:.0f} M)", flush=True)
        if "tracker" in args.parts:  # first: the detector's precision changes below
            bench_tracker(tracker, tracker_processor, frames, args, rows)
        if "detector" in args.parts:
            bench_detector(detector, processor, frames[0], args, rows)
        del detector, tracker
    if "baseline" in args.parts:
        bench_baseline(frames[0], args, rows)
    print(f"\n{machine_line()}\n")
    print("| step (DAVIS 480p frame) | precision | seconds |\n|---|---|---|")
    for name, precision, seconds in rows:
        print(f"| {name} | {precision} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
