"""Automatic mode end to end: SAM-Track's own code vs samtrack, same weights, on a DAVIS sequence.

Automatic mode (SAM-Track's): segment everything on frame 0 and every ``sam_gap`` (10) frames, add the
segments that are not tracked yet as new objects, track everything with R50-DeAOT-L in between. Timed:

- **SAM-Track**: its own code (z-x-yang/Segment-and-Track-Anything: ``SegTracker`` with its bundled
  ``sam/segment_anything`` automatic mask generator and ``aot/`` tracker), run on this CPU and driven
  frame by frame the way its automatic-mode loop does (``demo.ipynb`` / ``seg_track_anything.py``:
  ``seg`` + ``add_reference`` on frame 0; ``seg``, ``track``, ``find_new_objs``, ``add_reference`` on a
  key frame; ``track(update_memory=True)`` otherwise; ``gc.collect()`` after every frame; each mask
  written as a palette PNG by its ``save_prediction``). It feeds SAM the BGR frame, as it does.
- **samtrack**: ``Session.iter_auto`` (what ``samtrack track VIDEO --auto`` runs; masks written by the
  session's mask store), in fp32 and in the default precision ``auto`` (bf16 on CPUs with native bf16).

Same weights and settings on both sides: SAM ViT-B with random weights saved in the official
segment-anything layout (the IoU head's bias raised and the mask logits scaled so that masks pass the
filters: otherwise random weights find nothing and the run is trivial), the R50-DeAOT-L parity fixture
checkpoint (``shared/fixtures/deaot/r50_deaotl.pth``, official layout, random weights), SAM-Track's
defaults (``model_args.py``: 16 points per side, one crop layer, pred_iou_thresh 0.8, stability 0.9,
min_mask_region_area 200, sam_gap 10, min_area 200, max_obj_num 255, min_new_obj_iou 0.8, long-term
memory gap and length 9999). Models are loaded before the clock starts. The implementations run one
after the other in one invocation (a shared machine drifts: only numbers of one run compare), each in
a process of its own: samtrack asks glibc to keep freed memory (``keep_freed_cpu_memory``), a
process-wide setting, so SAM-Track runs with glibc's defaults as its users run it, and
``--impl sam-track-heap`` shows SAM-Track given samtrack's setting. The machine's measured matmul peak
is printed before and after.

Per frame the wall time is taken; key frames (multiples of sam_gap, frame 0 included) and tracked
frames are summed apart. Within them, "segment everything" and "tracker" are the time spent in the
segmenter and in the tracker's calls (methods wrapped with timers; neither side's code is edited for
it); "other" is the rest (reading frames, new-object merge, writing masks).

Getting SAM-Track's code (it is not part of this repository and is not copied into it):

    git clone https://github.com/z-x-yang/Segment-and-Track-Anything /tmp/sam-track   # 92455b3 was used
    python benchmarks/bench_auto.py --samtrack-src /tmp/sam-track
    python benchmarks/bench_auto.py --samtrack-src /tmp/sam-track --frames 31 --sequence bmx-trees
    python benchmarks/bench_auto.py --frames 11                  # samtrack only (SAM-Track skipped)
    python benchmarks/bench_auto.py --frames 2 --points-per-side 4   # a quick look

``--samtrack-src`` takes a checkout or a bare git directory (its HEAD is exported). The parts needed
(``SegTracker.py``, ``aot_tracker.py``, ``model_args.py``, ``seg_track_anything.py``, ``aot/``,
``sam/segment_anything/``, ``tool/``) are copied to a temporary folder and that copy is patched at run time for a CPU without CUDA
and without Grounding DINO (automatic mode does not use it); every change is printed. Needs
``scikit-image``, ``scipy``, ``imageio`` and ``opencv`` (SAM-Track's imports) in the environment.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from bench_everything import StageClock, save_random_vit_b
from machine import matmul_gflops

ROOT = Path(__file__).resolve().parents[1]
DAVIS = ROOT.parent / "shared" / "data" / "davis2016" / "JPEGImages" / "480p"
R50 = ROOT.parent / "shared" / "fixtures" / "deaot" / "r50_deaotl.pth"
SAM_TRACK_PARTS = ("SegTracker.py", "aot_tracker.py", "model_args.py", "seg_track_anything.py", "aot",
                   "sam/__init__.py", "sam/segment_anything", "tool")
# (file, text, replacement, why): SAM-Track's code on a CPU without CUDA and without Grounding DINO.
SAM_TRACK_PATCHES = (
    ("aot_tracker.py", ".cuda(gpu_id)", ".cpu()", "tracker model built on the CPU"),
    ("aot_tracker.py", ".cuda(self.gpu_id)", ".cpu()", "frames and masks stay on the CPU"),
    ("aot/utils/checkpoint.py", 'map_location=torch.device("cuda:" + str(gpu))', 'map_location="cpu"',
     "checkpoint loaded onto the CPU"),
    ("aot/utils/checkpoint.py", "return net.cuda(gpu),", "return net,", "loaded model not moved to CUDA"),
    ("aot/utils/math.py", "device=torch.device('cuda', gpu_id)", "device='cpu'",
     "permutation helper on the CPU (training only)"),
    ("SegTracker.py", "from tool.detector import Detector\n", "",
     "Grounding DINO not imported (automatic mode does not use it)"),
    ("SegTracker.py", "self.detector = Detector(self.sam.device)", "self.detector = None",
     "Grounding DINO not built"),
)
STAGES = ("segment everything", "tracker")
IMPLS = {"sam-track": "SAM-Track (its own code, fp32)",
         "sam-track-heap": "SAM-Track (its own code, fp32) with samtrack's malloc settings",
         "fp32": "samtrack fp32", "auto": "samtrack auto", "bf16": "samtrack bf16"}


@dataclass
class Result:
    name: str
    frame_seconds: list[float] = field(default_factory=list)
    key: list[bool] = field(default_factory=list)
    stages: dict[str, dict[str, float]] = field(default_factory=lambda: {"key": {}, "tracked": {}})
    objects_found: int = 0
    found_per_key_frame: list[int] = field(default_factory=list)
    objects_on_last_frame: int = 0

    def add_frame(self, seconds: float, key: bool, stage_seconds: dict[str, float]) -> None:
        self.frame_seconds.append(seconds)
        self.key.append(key)
        kind = self.stages["key" if key else "tracked"]
        for stage, s in stage_seconds.items():
            kind[stage] = kind.get(stage, 0.0) + s


def sam_track_copy(src: Path, dest: Path) -> list[str]:
    """SAM-Track's needed parts from a checkout or a bare git directory, copied to `dest` and patched
    for the CPU; returns what was changed."""
    if (src / "SegTracker.py").exists():
        for part in SAM_TRACK_PARTS:
            copy = shutil.copytree if (src / part).is_dir() else shutil.copy2
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            copy(src / part, dest / part)
        rev = "work tree"
    else:
        git = ["git", "--git-dir", str(src)]
        listing = subprocess.run([*git, "ls-tree", "-r", "-z", "HEAD", "--", *SAM_TRACK_PARTS], check=True,
                                 capture_output=True, text=True).stdout
        for entry in filter(None, listing.split("\0")):
            info, name = entry.split("\t", 1)
            if info.split()[1] == "blob":
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                (dest / name).write_bytes(subprocess.run([*git, "cat-file", "blob", info.split()[2]], check=True,
                                                         capture_output=True).stdout)
        rev = subprocess.run(["git", "--git-dir", str(src), "rev-parse", "--short", "HEAD"], check=True,
                             capture_output=True, text=True).stdout.strip()
    done = [f"source: {src} ({rev})"]
    for name, old, new, why in SAM_TRACK_PATCHES:
        path = dest / name
        text = path.read_text()
        n = text.count(old)
        if not n:
            raise SystemExit(f"SAM-Track's {name} no longer contains {old!r}: this benchmark needs updating")
        path.write_text(text.replace(old, new))
        done.append(f"{name}: `{old.strip()}` → `{new}` ({n}×): {why}")
    return done


@contextmanager
def sam_track_imports(root: Path):
    """Import SAM-Track's modules as its scripts do: from its root, with `aot/` on the path."""
    cwd = os.getcwd()
    sys.path[:0] = [str(root), str(root / "aot")]
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(cwd)


def run_sam_track(root: Path, sam_pth: Path, files: list[Path], gap: int, points: int, out: Path) -> Result:
    import cv2

    with sam_track_imports(root):
        from model_args import aot_args, sam_args, segtracker_args
        from seg_track_anything import save_prediction
        from SegTracker import SegTracker

        generator_args = {**sam_args["generator_args"], "points_per_side": points}
        sam_args = {**sam_args, "sam_checkpoint": str(sam_pth), "gpu_id": "cpu", "generator_args": generator_args}
        aot_args = {**aot_args, "model_path": str(R50)}
        segtracker_args = {**segtracker_args, "sam_gap": gap}
        print(f"SAM-Track settings: {sam_args['generator_args']}, {segtracker_args}, long_term_mem_gap "
              f"{aot_args['long_term_mem_gap']}, max_len_long_term {aot_args['max_len_long_term']}", flush=True)
        st = SegTracker(segtracker_args, sam_args, aot_args)
    clock = StageClock()
    st.seg = clock.wrap("segment everything", st.seg)
    for method in ("add_reference_frame", "track", "update_memory"):
        setattr(st.tracker, method, clock.wrap("tracker", getattr(st.tracker, method)))
    result = Result("")
    st.restart_tracker()
    found = 0
    for i, path in enumerate(files):
        clock.seconds.clear()
        start = time.perf_counter()
        frame = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        if i % gap == 0:
            seg_mask = st.seg(frame)
            if seg_mask is None:
                raise SystemExit(f"SAM-Track's segment-everything found no mask on frame {i}")
            gc.collect()
            if i == 0:
                mask = seg_mask
            else:
                track_mask = st.track(frame)
                new_objects = st.find_new_objs(track_mask, seg_mask)
                save_prediction(new_objects, str(out), f"{i:05d}_new.png")
                mask = track_mask + new_objects
            st.add_reference(frame, mask)
            result.found_per_key_frame.append(st.get_obj_num() - found)
            found = st.get_obj_num()
        else:
            mask = st.track(frame, update_memory=True)
        gc.collect()
        save_prediction(mask, str(out), f"{i:05d}.png")
        result.add_frame(time.perf_counter() - start, i % gap == 0, clock.seconds)
    result.objects_found = st.get_obj_num()
    result.objects_on_last_frame = len(np.unique(mask)) - 1
    return result


def run_samtrack(sam_pth: Path, sequence: Path, n_frames: int, gap: int, points: int, precision: str,
                 out: Path) -> Result:
    from samtrack.models.pool import ModelPool
    from samtrack.tracking.session import Session
    from samtrack.tracking.settings import Settings

    settings = Settings(precision=precision, sam_gap=gap).updated({
        "segmenter.model": str(sam_pth), "tracker.model": "r50-deaotl", "tracker.checkpoint": str(R50),
        "everything.points_per_side": points})
    pool = ModelPool()
    segmenter, tracker = pool.segmenter(settings), pool.tracker(settings)
    clock = StageClock()
    segmenter.everything = clock.wrap("segment everything", segmenter.everything)
    for method in ("reset", "add_reference", "track", "update_memory"):
        setattr(tracker, method, clock.wrap("tracker", getattr(tracker, method)))
    result = Result(f" (= {segmenter.precision})")
    with Session(sequence, out, settings, models=pool, segmenter=segmenter, tracker=tracker) as session:
        found = 0
        start = time.perf_counter()
        for r in session.iter_auto(n_frames - 1):
            if r.index % gap == 0:
                result.found_per_key_frame.append(len(session.objects) - found)
                found = len(session.objects)
            if r.index == n_frames - 1:
                session.store.flush()  # the last masks reach the disk inside the clock
                result.objects_on_last_frame = len(r.objects)
            now = time.perf_counter()
            result.add_frame(now - start, r.index % gap == 0, clock.seconds)
            clock.seconds.clear()
            start = time.perf_counter()
        result.objects_found = len(session.objects)
    return result


def peaks() -> dict[str, float]:
    return {dtype: matmul_gflops(2048, 5, dtype) for dtype in ("float32", "bfloat16")}


def report(results: list[Result], n_frames: int, gap: int, before: dict[str, float], after: dict[str, float]) -> None:
    print(f"\nmatmul peak (2048² products, {torch.get_num_threads()} threads): fp32 {before['float32']:.0f} → "
          f"{after['float32']:.0f} GFLOP/s, bf16 {before['bfloat16']:.0f} → {after['bfloat16']:.0f} GFLOP/s "
          "(before → after the runs)")
    if hasattr(os, "getloadavg"):
        print("load average after the runs (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    n_key = len(range(0, n_frames, gap))
    print(f"\n{n_frames} frames: {n_key} key frame(s) (segment everything + track), {n_frames - n_key} tracked "
          "frame(s)\n")
    print("| implementation | total s | frames/s | vs SAM-Track | key frames s (per key frame) | "
          "tracked frames s (per frame) | segment everything s | tracker s | other s | "
          "objects found (per key frame) | objects on last frame |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    reference = next((sum(r.frame_seconds) for r in results if r.name == IMPLS["sam-track"]), None)
    for r in results:
        total = sum(r.frame_seconds)
        key = sum(s for s, k in zip(r.frame_seconds, r.key) if k)
        tracked = total - key
        stage = {s: r.stages["key"].get(s, 0.0) + r.stages["tracked"].get(s, 0.0) for s in STAGES}
        other = total - sum(stage.values())
        ratio = f"{reference / total:.2f}×" if reference else "-"
        per_tracked = tracked / max(n_frames - n_key, 1)
        print(f"| {r.name} | {total:.1f} | {n_frames / total:.3f} | {ratio} | {key:.1f} ({key / n_key:.1f}) | "
              f"{tracked:.1f} ({per_tracked:.2f}) | {stage['segment everything']:.1f} | {stage['tracker']:.1f} | "
              f"{other:.1f} | {r.objects_found} ({' + '.join(map(str, r.found_per_key_frame))}) | "
              f"{r.objects_on_last_frame} |")


def run_one(impl: str, root: Path | None, sam_pth: Path, sequence: Path, n_frames: int, gap: int, points: int,
            threads: int, out: Path) -> Result:
    """One implementation, in a process of its own (samtrack's malloc settings are process-wide)."""
    torch.set_num_threads(threads)
    if impl.startswith("sam-track"):
        assert root is not None
        if impl == "sam-track-heap":
            from samtrack.models.common import keep_freed_cpu_memory

            keep_freed_cpu_memory()
        files = sorted(sequence.glob("*.jpg"))[:n_frames]
        result = run_sam_track(root, sam_pth, files, gap, points, out)
    else:
        result = run_samtrack(sam_pth, sequence, n_frames, gap, points, impl, out)
    result.name = IMPLS[impl] + (result.name if impl == "auto" else "")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samtrack-src", type=Path, default=os.environ.get("SAMTRACK_SRC"),
                        help="SAM-Track checkout or bare git directory (default: $SAMTRACK_SRC; none: skipped)")
    parser.add_argument("--impl", nargs="+", default=["sam-track", "fp32", "auto"], choices=list(IMPLS),
                        help="what to run, in this order")
    parser.add_argument("--sequence", default="blackswan")
    parser.add_argument("--frames", type=int, default=21, help="frames from the start of the sequence")
    parser.add_argument("--sam-gap", type=int, default=10)
    parser.add_argument("--points-per-side", type=int, default=16, help="both sides (4: a quick look)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sequence = DAVIS / args.sequence
    if len(list(sequence.glob("*.jpg"))) < args.frames:
        raise SystemExit(f"{sequence} has fewer than --frames {args.frames} frames")
    print(f"# automatic mode end to end: {args.sequence}, {args.frames} frames, sam_gap {args.sam_gap}, "
          f"{args.points_per_side} points per side, "
          f"SAM ViT-B + R50-DeAOT-L (random weights, official layouts), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    impls = list(dict.fromkeys(args.impl))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sam_pth = save_random_vit_b(tmp / "sam_vit_b_random.pth")
        root = None
        if args.samtrack_src is None:
            print("SAM-Track: skipped (no --samtrack-src; see this script's docstring for how to get it)")
            impls = [i for i in impls if not i.startswith("sam-track")]
        elif any(i.startswith("sam-track") for i in impls):
            root = tmp / "sam-track"
            root.mkdir()
            print("SAM-Track's code, copied and patched for this CPU:\n- " +
                  "\n- ".join(sam_track_copy(Path(args.samtrack_src), root)), flush=True)
        before = peaks()
        results = []
        for impl in impls:
            out = tmp / f"out-{impl}"
            out.mkdir()
            print(f"running {IMPLS[impl]} ...", flush=True)
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                result = pool.submit(run_one, impl, root, sam_pth, sequence, args.frames, args.sam_gap,
                                     args.points_per_side, args.threads, out).result()
            print(f"{result.name}: {sum(result.frame_seconds):.1f} s, {result.objects_found} objects found",
                  flush=True)
            results.append(result)
        report(results, args.frames, args.sam_gap, before, peaks())


if __name__ == "__main__":
    main()
