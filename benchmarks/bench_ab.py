"""Before/after speed of the models at one precision, paired and interleaved, with agreement to fp32.

Each (source tree, precision) pair runs in its own worker process that imports ``samtrack`` from that
tree; the workers take turns, one unit of work each (a tracked frame, a first click, a key frame), so
both sides see the same machine load. A shared 2-core machine drifts by tens of percent within
minutes: only numbers of one run compare, and every unit's wall time and CPU time (all threads of the
worker) are kept so that the spread shows. The machine's CPU flags and its fp32 / bf16 matrix-product
peaks are measured before and after the run and printed beside the times, with each model's counted
FLOPs divided by the bf16 peak (the "floor").

Units (full-size models, random weights: speed does not depend on the values):

- ``deaot:r50-deaotl:2``: ``track`` + ``update_memory`` of one 854×480 DAVIS frame (blackswan, looped),
  a DeAOT/AOT variant with the parity fixtures' official-format random checkpoint, N objects (stripes).
- ``click``: the first click on a frame not yet encoded, SAM ViT-B (encoder + two-pass decoder).
- ``everything``: segment-everything on one key frame, SAM ViT-B, SAM-Track's settings (5 encoder passes).
- ``sam2:sam2.1-tiny:1`` / ``sam2:edgetam:1``: SAM 2.1 / EdgeTAM ``track`` + ``update_memory`` per frame.

Agreement: every side's outputs are compared with those of the reference side (the first ``after``
side that ran fp32, else the first side): label agreement (% of pixels) for trackers, mask IoU for
clicks, id-mask pixel agreement and object counts for segment-everything. A tracker feeds its own
labels back into its memory, so its agreement measures the drift a user sees over the run.

FLOPs are counted in the first side (``after`` at the first of ``--precisions``), on the last warm-up
step. List bf16 first to count the attention that the blocked CPU path runs as matrix products;
give trackers with a growing memory (SAM 2 family: 7 frames) enough warm-up steps to fill it.

    python benchmarks/bench_ab.py --before /tmp/base/src --unit deaot:r50-deaotl:2 --precisions fp32 bf16
    python benchmarks/bench_ab.py --unit click --precisions fp32 bf16 --rounds 5   # this tree only
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
DAVIS = SHARED / "data" / "davis2016" / "JPEGImages" / "480p"
FIXTURES = SHARED / "fixtures" / "deaot"
EVERYTHING_SETTINGS = {"points_per_side": 16, "pred_iou_thresh": 0.8, "stability_score_thresh": 0.9,
                       "crop_n_layers": 1, "crop_n_points_downscale_factor": 2, "min_mask_region_area": 200}


def frames(sequence: str = "blackswan", count: int = 50) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((DAVIS / sequence).glob("*.jpg"))[:count]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def stripes(shape: tuple[int, int], n: int) -> np.ndarray:
    """n objects as vertical stripes below the top 40 rows (bench_deaot's reference mask)."""
    mask = np.zeros(shape, np.uint8)
    for i, cols in enumerate(np.array_split(np.arange(shape[1]), n)):
        mask[40:, cols] = i + 1
    return mask


class TrackerUnit:
    """Tracks a looped sequence: each step is one frame's track + update_memory; output: its labels."""

    def __init__(self, tracker, objects: int) -> None:
        self.frames = frames()
        self.tracker = tracker
        tracker.add_reference(self.frames[0], stripes(self.frames[0].shape[:2], objects))
        self.index = 0

    def step(self) -> np.ndarray:
        self.index += 1
        labels = self.tracker.track(self.frames[self.index % len(self.frames)])
        self.tracker.update_memory(labels)
        return labels


def unit_scale_init(model, seed: int = 0):
    """Re-draw a transformers model's random weights so that activations keep unit scale through the
    layers: transformers initialises SAM / SAM 2 with weights of std 1e-10 (and some norms at 0), which
    leaves the encoder's output at ~1e-19, every mask logit near 0 and bf16-vs-fp32 agreement
    meaningless. Matrices and kernels get std 1/sqrt(fan-in), norms 1 and 0, biases 0, every other
    parameter (position tables, tokens) std 0.02. Speed does not depend on the values."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                if isinstance(module, torch.nn.modules.normalization.LayerNorm | torch.nn.GroupNorm) or \
                        "norm" in type(module).__name__.lower():
                    param.fill_(1.0 if name == "weight" else 0.0)
                elif name == "bias":
                    param.zero_()
                elif name == "weight" and param.dim() >= 2:
                    fan_in = param[0].numel()
                    param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
                else:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    return model


def deaot_unit(name: str, objects: str, precision: str) -> TrackerUnit:
    from samtrack.models.trackers import load_tracker

    checkpoint = {"r50-deaotl": FIXTURES / "r50_deaotl.pth", "deaot-t": FIXTURES / "deaott.pth"}[name]
    return TrackerUnit(load_tracker(name, checkpoint, device="cpu", precision=precision), int(objects))


def sam2_unit(name: str, objects: str, precision: str) -> TrackerUnit:
    import torch
    from transformers import EdgeTamVideoModel, Sam2VideoModel

    from samtrack.models.sam2video import Sam2VideoTracker
    from samtrack.models.sam2video.configs import full_size_config
    from samtrack.models.sam2video.loading import default_processor

    torch.manual_seed(0)  # the random buffers (Fourier position features) too
    config = full_size_config(name)
    model = unit_scale_init((EdgeTamVideoModel if name == "edgetam" else Sam2VideoModel)(config).eval())
    return TrackerUnit(Sam2VideoTracker(model, default_processor(config.image_size), device="cpu",
                                           precision=precision), int(objects))


def random_vit_b():
    """facebook/sam-vit-base's architecture with unit-scale random weights (:func:`unit_scale_init`)."""
    import torch
    from transformers import SamConfig, SamModel

    torch.manual_seed(0)  # the random buffers (Fourier position features) too
    return unit_scale_init(SamModel._from_config(SamConfig(), attn_implementation="sdpa").eval())


class ClickUnit:
    """The first click on a frame whose embedding is not cached: encoder + SAM-Track's two-pass decoder."""

    POINTS = ((430, 210), (300, 330), (600, 150), (120, 400), (700, 380))

    def __init__(self, precision: str) -> None:
        import torch
        from transformers import SamImageProcessor

        from samtrack.models.common import TORCH_DTYPES, resolve_precision
        from samtrack.models.sam.backends import PromptModel
        from samtrack.models.segmenter import Segmenter

        dtype = TORCH_DTYPES[resolve_precision(precision, torch.device("cpu"))]
        self.seg = Segmenter(PromptModel(random_vit_b(), SamImageProcessor(), torch.device("cpu"), dtype))
        self.frames = frames()[::10]
        self.index = 0

    def step(self) -> np.ndarray:
        frame = self.frames[self.index % len(self.frames)]
        point = self.POINTS[self.index % len(self.POINTS)]
        self.index += 1
        self.seg._cache = None  # a frame not yet encoded
        return self.seg.click(frame, [point], [1])


class EverythingUnit:
    """Segment-everything on one key frame (every encoder pass counts), SAM-Track's settings."""

    def __init__(self, precision: str, checkpoint: str) -> None:
        from samtrack.models.segmenter import Segmenter

        self.seg = Segmenter.load(checkpoint, device="cpu", precision=precision)
        self.frame = frames(count=1)[0]

    def step(self) -> np.ndarray:
        from samtrack.models.sam.everything import merge_masks

        self.seg._cache = None
        records = self.seg.generate(self.frame, **EVERYTHING_SETTINGS)
        return merge_masks(records, self.frame.shape[:2], 200, 255)


def make_unit(spec: str, precision: str, checkpoint: str | None):
    kind, *args = spec.split(":")
    if kind == "deaot":
        return deaot_unit(*args, precision)
    if kind == "sam2":
        return sam2_unit(*args, precision)
    if kind == "click":
        return ClickUnit(precision)
    if kind == "everything":
        return EverythingUnit(precision, checkpoint)
    raise SystemExit(f"unknown unit {spec!r}")


def flop_counter():
    """A dispatch mode summing torch's FlopCounterMode formulas, without its module tracker (which fails on EdgeTAM's perceiver
    under inference mode): counts matrix products and convolutions, not the fused CPU attention kernel."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            formula = flop_registry.get(func._overloadpacket)
            if formula is None:
                # Composite ops (matmul, linear: not decomposed under inference mode) run as their parts,
                # which come back through this mode.
                with self:  # the mode is off inside its own dispatch
                    out = func.decompose(*args, **kwargs)
                return func(*args, **kwargs) if out is NotImplemented else out
            out = func(*args, **kwargs)
            self.total += formula(*args, **kwargs, out_val=out)
            return out

    return Counter()


def _serve(conn, src: str, spec: str, precision: str, threads: int, checkpoint: str | None) -> None:
    """Worker: import samtrack from `src`, build the unit, then run one step per request."""
    sys.path.insert(0, src)
    import torch

    torch.set_num_threads(threads)
    import samtrack

    assert str(Path(samtrack.__file__).resolve()).startswith(str(Path(src).resolve())), samtrack.__file__
    unit = make_unit(spec, precision, checkpoint)
    ran = getattr(getattr(unit, "tracker", None), "precision", None) or getattr(
        getattr(unit, "seg", None), "precision", precision)
    conn.send(("ready", ran))
    while request := conn.recv():
        if request == "count":  # an untimed step whose matrix-product FLOPs are counted
            with flop_counter() as counter:
                out = unit.step()
            conn.send((0.0, 0.0, out, counter.total / 1e9))
            continue
        start, cpu = time.perf_counter(), time.process_time()
        out = unit.step()
        conn.send((time.perf_counter() - start, time.process_time() - cpu, out, None))


class Worker:
    def __init__(self, label: str, src: str, spec: str, precision: str, threads: int, checkpoint: str | None):
        ctx = multiprocessing.get_context("spawn")
        self.label = label
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, src, spec, precision, threads, checkpoint), daemon=True)
        self.process.start()
        _, self.ran = self.conn.recv()
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.outputs: list[np.ndarray] = []

    def step(self, keep: bool, count: bool = False) -> float | None:
        """One unit of work; with `count` untimed, returning its counted GFLOP."""
        self.conn.send("count" if count else "step")
        wall, cpu, out, gflop = self.conn.recv()
        if keep:
            self.wall.append(wall)
            self.cpu.append(cpu)
        self.outputs.append(out)
        return gflop

    def close(self) -> None:
        self.conn.send(None)
        self.process.join()


def agreement(kind: str, ours: list[np.ndarray], reference: list[np.ndarray]) -> str:
    """How close a side's outputs are to the reference side's, step by step (warm-up steps included): median [min–max]."""
    if kind == "click":
        ious = [np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1) for a, b in zip(ours, reference)]
        return f"mask IoU {statistics.median(ious):.4f} [{min(ious):.4f}–{max(ious):.4f}]"
    same = [float((a == b).mean()) for a, b in zip(ours, reference)]
    # With random weights a tracker may label (nearly) everything background: then agreement says little.
    foreground = statistics.median(float((b > 0).mean()) for b in reference)
    text = (f"{100 * statistics.median(same):.2f}% [{100 * min(same):.2f}–{100 * max(same):.2f}] of pixels "
            f"(reference foreground {100 * foreground:.1f}%)")
    if kind == "everything":
        text += f", objects {int(ours[-1].max())} vs {int(reference[-1].max())}"
    return text


def cpu_flags() -> str:
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
    return " ".join(f for f in wanted if f in flags) or "none of " + " ".join(wanted)


def peaks() -> dict[str, float]:
    from machine import matmul_gflops

    return {"fp32": matmul_gflops(2048, 5, "float32"), "bf16": matmul_gflops(2048, 5, "bfloat16")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unit", required=True, help="deaot:NAME:OBJECTS, sam2:NAME:OBJECTS, click or everything")
    parser.add_argument("--before", help="a samtrack src directory to compare with (e.g. an export of main)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per side")
    parser.add_argument("--warm-up", type=int, default=1, help="untimed steps per side first")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    sides = [("after", str(ROOT / "src"))] + ([("before", args.before)] if args.before else [])
    before_peaks = peaks()
    checkpoint = None
    tmp = None
    if args.unit == "everything":
        import tempfile

        from bench_everything import save_random_vit_b

        tmp = tempfile.TemporaryDirectory()
        checkpoint = str(save_random_vit_b(Path(tmp.name) / "sam_vit_b_random.pth"))
    workers = [Worker(f"{side} {p}", src, args.unit, p, args.threads, checkpoint)
               for p in args.precisions for side, src in sides]
    gflop = None
    for r in range(args.warm_up + args.rounds):
        for w in workers:
            # the last warm-up step of the first side is counted (trackers: with the memory of the timed steps)
            counted = w.step(keep=r >= args.warm_up, count=w is workers[0] and r == args.warm_up - 1)
            gflop = counted if counted is not None else gflop
        print(f"round {r + 1}: " + ", ".join(f"{w.label} {w.wall[-1] if w.wall else float('nan'):.3f} s"
                                            for w in workers), file=sys.stderr, flush=True)
    for w in workers:
        w.close()
    after_peaks = peaks()
    kind = args.unit.split(":")[0]
    reference = next((w for w in workers if w.label.startswith("after ") and w.ran == "fp32"), workers[0])
    print(f"\n# {args.unit}, {args.threads} threads, {args.rounds} paired rounds (+{args.warm_up} warm-up), "
          f"torch {torch.__version__}")
    print(f"CPU flags: {cpu_flags()}; matmul peak (2048², {args.threads} threads) before → after: "
          f"fp32 {before_peaks['fp32']:.0f} → {after_peaks['fp32']:.0f}, bf16 {before_peaks['bf16']:.0f} → "
          f"{after_peaks['bf16']:.0f} GFLOP/s")
    if gflop:
        floor = gflop / max(before_peaks["bf16"], after_peaks["bf16"])
        print(f"counted work (torch's FlopCounterMode: matrix products and convolutions, not the fused CPU "
              f"attention kernel) {gflop:.0f} GFLOP per step: bf16 floor {floor:.3f} s at the higher bf16 peak")
    sys.path.insert(0, str(ROOT / "src"))
    from samtrack.models.common import resolve_precision

    print(f"`auto` resolves to {resolve_precision('auto', torch.device('cpu'))} in this process (this tree's probe)")
    print(f"agreement reference: {reference.label} (ran {reference.ran})\n")
    print("| side | ran | wall s median [min–max] | vs first side (paired wall ratios) | CPU s median | "
          "vs first side (paired CPU ratios) | agreement |")
    print("|---|---|---|---|---|---|---|")
    for w in workers:
        ratios = [a / b for a, b in zip(workers[0].wall, w.wall)]
        cpu_ratios = [a / b for a, b in zip(workers[0].cpu, w.cpu)]
        print(f"| {w.label} | {w.ran} | {statistics.median(w.wall):.3f} [{min(w.wall):.3f}–{max(w.wall):.3f}] | "
              f"{statistics.median(ratios):.2f}× [{min(ratios):.2f}–{max(ratios):.2f}] | {statistics.median(w.cpu):.3f} | "
              f"{statistics.median(cpu_ratios):.2f}× [{min(cpu_ratios):.2f}–{max(cpu_ratios):.2f}] | "
              f"{agreement(kind, w.outputs, reference.outputs)} |")
    pairs = [(w, b) for w in workers for b in workers if w.label.startswith("after ")
             and b.label == "before " + w.label.removeprefix("after ")]
    for after, before in pairs:
        wall = [b / a for a, b in zip(after.wall, before.wall)]
        cpu = [b / a for a, b in zip(after.cpu, before.cpu)]
        print(f"\n{after.label.removeprefix('after ')}: after is {statistics.median(wall):.2f}× "
              f"[{min(wall):.2f}–{max(wall):.2f}] as fast as before in wall time, {statistics.median(cpu):.2f}× "
              f"[{min(cpu):.2f}–{max(cpu):.2f}] in CPU time (paired rounds)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
