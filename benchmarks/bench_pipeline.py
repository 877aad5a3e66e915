"""Automatic segment-and-track pipeline: per-stage time breakdown, peak RSS, and RSS over a long run.

    python benchmarks/bench_pipeline.py                       # blackswan, full-size random models
    python benchmarks/bench_pipeline.py --long 2000           # + a 2,000-frame looped run, RSS over time

    python benchmarks/bench_pipeline.py --long 2000 --skip-main   # only the long run

Models are the real architectures at full size with random weights (speed does not depend on the
values): SAM ViT-B (SamConfig defaults) and R50-DeAOT-L from the parity fixture checkpoint. The long
run loops a DAVIS sequence at --long-scale of its size, with a tiny random SAM by default
(--long-sam), so that 2,000 frames finish in reasonable time on a CPU; the code path is the same.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from memory import peak_rss_mb, rss_mb
from PIL import Image

from samtrack.io.sources import open_source
from samtrack.models.pool import ModelPool
from samtrack.tracking.session import Session
from samtrack.tracking.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DAVIS = ROOT.parent / "shared" / "data" / "davis2016" / "JPEGImages" / "480p"
R50 = ROOT.parent / "shared" / "fixtures" / "deaot" / "r50_deaotl.pth"
SAM_DIR = Path(tempfile.gettempdir()) / "samtrack-bench" / "sam-vit-b-random"


def tiny_random_sam() -> str:
    """The test suite's tiny random SAM (same code path as ViT-B, a fraction of the compute)."""
    out = SAM_DIR.with_name("sam-tiny-random")
    if not (out / "config.json").exists():
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import save_tiny_sam

        save_tiny_sam(out)
    return str(out)


def random_sam_vit_b() -> str:
    """A full-size SAM ViT-B with random weights, saved once like a downloaded model."""
    if not (SAM_DIR / "config.json").exists():
        from transformers import SamConfig, SamImageProcessor, SamModel

        torch.manual_seed(0)
        SamModel(SamConfig()).save_pretrained(SAM_DIR)
        SamImageProcessor().save_pretrained(SAM_DIR)
    return str(SAM_DIR)


class Timed:
    """Wraps a model object; the time of every method call is added to `times[stage]`."""

    def __init__(self, obj, stage: str, times: dict[str, float]) -> None:
        self._obj, self._stage, self._times = obj, stage, times

    def __getattr__(self, name: str):
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            t = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._times[self._stage] += time.perf_counter() - t

        return call


def time_decoding(source, times: dict[str, float]) -> None:
    read = source._read

    def timed(index: int):
        t = time.perf_counter()
        try:
            return read(index)
        finally:
            times["decode (background thread)"] += time.perf_counter() - t

    source._read = timed


def looped_sequence(seq: str, n: int, scale: float, out: Path) -> Path:
    """An image folder of `n` frames: the sequence played forwards and backwards, resized by `scale`."""
    files = sorted((DAVIS / seq).glob("*.jpg"))
    files = files + files[-2:0:-1]
    out.mkdir(parents=True, exist_ok=True)
    cache: dict[Path, Image.Image] = {}
    for i in range(n):
        src = files[i % len(files)]
        if src not in cache:
            im = Image.open(src)
            cache[src] = im.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR)
        cache[src].save(out / f"{i:05d}.jpg", quality=90)
    return out


def run(input_path: Path, out: Path, settings: Settings, frames: int | None, sample_every: int = 0):
    times: dict[str, float] = defaultdict(float)
    source = open_source(input_path)
    time_decoding(source, times)
    pool = ModelPool()
    session = Session(source, out, settings, models=pool,
                      segmenter=Timed(pool.segmenter(settings), "segment everything", times),
                      tracker=Timed(pool.tracker(settings), "track", times))
    samples: list[tuple[int, float]] = []

    def progress(done: int, total: int, info: dict) -> None:
        if sample_every and (done % sample_every == 0 or done == total):
            samples.append((done, rss_mb()))

    t0 = time.perf_counter()
    session.propagate(0, None if frames is None else min(frames, len(source)) - 1, discover=True, progress=progress)
    loop = time.perf_counter() - t0
    t = time.perf_counter()
    session.store.flush()
    times["write masks (flush at end)"] += time.perf_counter() - t
    n = session.cursor + 1
    objects = len(session.objects)
    merge = session.timings.get("merge_new_objects", 0.0)
    session.close()
    return times, loop, n, objects, merge, samples


def main() -> None:
    # The random ViT-B's activations shrink into subnormal floats, which Intel CPUs compute ~15× slower;
    # real weights do not do this, so they are flushed to zero (see bench_segmenter.sam_vit_b).
    torch.set_flush_denormal(True)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequence", default="blackswan")
    parser.add_argument("--frames", type=int, default=None, help="frames of the sequence (default: all)")
    parser.add_argument("--long", type=int, default=0, help="also run a looped sequence of this many frames")
    parser.add_argument("--long-scale", type=float, default=0.25, help="frame scale for the long run")
    parser.add_argument("--long-tracker", default="deaot-t", choices=["deaot-t", "r50-deaotl"])
    parser.add_argument("--long-sam", default="tiny", choices=["tiny", "vit-b"],
                        help="segmenter for the long run (ViT-B costs minutes per key frame on a CPU)")
    parser.add_argument("--skip-main", action="store_true", help="only the long run")
    parser.add_argument("--max-len-long-term", type=int, default=8,
                        help="long-term memory cap for the long run (SAM-Track's default 9999: a frame joins "
                             "it only when a key frame adds objects to an engine)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")

    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_main:
            settings = Settings().updated({"segmenter.model": random_sam_vit_b(), "tracker.model": "r50-deaotl",
                                            "tracker.checkpoint": str(R50)})
            times, loop, n, objects, merge, _ = run(DAVIS / args.sequence, Path(tmp) / "run", settings,
                                                    args.frames)
            print(f"\n## automatic mode, {args.sequence}, {n} frames, SAM ViT-B + R50-DeAOT-L (random, full size)")
            print(f"objects found: {objects}; loop wall time {loop:.1f} s = {n / loop:.3f} frames/s; "
                  f"peak RSS {peak_rss_mb():.0f} MB\n")
            print("| stage | total s | per frame ms |")
            print("|---|---:|---:|")
            for stage, sec in [*sorted(times.items()), ("new-object merge", merge)]:
                print(f"| {stage} | {sec:.2f} | {1000 * sec / n:.1f} |")

        if args.long:
            folder = looped_sequence(args.sequence, args.long, args.long_scale, Path(tmp) / "long_frames")
            ckpt = R50 if args.long_tracker == "r50-deaotl" else R50.with_name("deaott.pth")
            sam = tiny_random_sam() if args.long_sam == "tiny" else random_sam_vit_b()
            # Random weights give low quality scores: keep every segment so that objects are found.
            long_settings = Settings().updated({
                "segmenter.model": sam, "tracker.model": args.long_tracker, "tracker.checkpoint": str(ckpt),
                "tracker.max_len_long_term": args.max_len_long_term, "everything.pred_iou_thresh": 0.0,
                "everything.stability_score_thresh": 0.0})
            _, loop, n, objects, _, samples = run(folder, Path(tmp) / "long", long_settings, None,
                                                  sample_every=max(args.long // 10, 1))
            print(f"\n## long run: {n} frames at {args.long_scale}x, {args.long_sam} SAM + {args.long_tracker}, "
                  f"max_len_long_term "
                  f"{args.max_len_long_term}: {loop:.0f} s, {objects} objects")
            print("| frames done | RSS MB |")
            print("|---:|---:|")
            for done, mb in samples:
                print(f"| {done} | {mb:.0f} |")


if __name__ == "__main__":
    main()
