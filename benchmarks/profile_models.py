"""Where the time goes: torch.profiler's top operators per model, with the oneDNN kernels that ran.

Full-size models, random weights (speed does not depend on the values), as in bench_ab.py:

- ``deaot:r50-deaotl:2`` / ``deaot:deaot-t:2``: one frame's ``track`` + ``update_memory`` (854×480).
- ``vit``: one SAM ViT-B encoder pass (1024² input, the frame's preprocessing included).
- ``click``: one click on an already encoded frame (SAM-Track's two-pass mask decoder, upscaling).
- ``everything-decoder``: segment-everything on a key frame whose five crops are already encoded
  (grid decoder + post-processing: upscaling, filters, NMS, small-region clean-up).
- ``sam2:sam2.1-tiny:1`` / ``sam2:edgetam:1``: one frame of SAM 2.1 / EdgeTAM after 7 frames (memory full).

For each: the top operators by self CPU time over ``--steps`` steps after the warm-up, with their
input shapes and dtypes and share of the total; then, from a second process run with
``ONEDNN_VERBOSE=1``, every oneDNN primitive that ran in one step, by kind and implementation
(``brg_matmul:avx512_core_bf16``, ``brgconv_1x1:avx512_core_amx``, ...), with its share of oneDNN's time.
Products that oneDNN does not run (float32 matrix products go to MKL, attention to ATen's own
kernels) do not appear there.

    python benchmarks/profile_models.py deaot:r50-deaotl:2 --precision bf16 --threads 1
    python benchmarks/profile_models.py vit click everything-decoder --precision fp32 bf16
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(spec: str, precision: str):
    """A zero-argument callable doing one step of `spec`, warmed up."""
    import bench_ab

    if spec.startswith(("deaot:", "sam2:")):
        unit = bench_ab.make_unit(spec, precision, None)
        for _ in range(7 if spec.startswith("sam2:") else 1):
            unit.step()
        return unit.step
    if spec in ("vit", "click"):
        unit = bench_ab.ClickUnit(precision)
        frame = unit.frames[0]
        seg = unit.seg
        if spec == "vit":
            def step():
                seg.model.embed([frame])
        else:
            seg.prepare(frame)

            def step():
                seg.click(frame, [(430, 210)], [1])
        step()
        return step
    if spec == "everything-decoder":
        import tempfile

        from bench_everything import save_random_vit_b

        checkpoint = save_random_vit_b(Path(tempfile.mkdtemp()) / "sam_vit_b_random.pth")
        unit = bench_ab.EverythingUnit(precision, str(checkpoint))
        seg, frame = unit.seg, unit.frame

        def step():
            seg.generate(frame, **bench_ab.EVERYTHING_SETTINGS)  # crops stay cached after the first call

        step()
        return step
    raise SystemExit(f"unknown model {spec!r}")


# Operator kinds of the summary table, first match wins.
KINDS = (
    ("attention (fused ATen kernel)", ("scaled_dot_product", "_flash_attention")),
    ("matrix products (bmm/baddbmm: attention, local attention)", ("aten::bmm", "aten::baddbmm")),
    ("linear layers (addmm/mm)", ("aten::addmm", "aten::mm", "aten::_linear")),
    ("convolutions", ("convolution", "conv2d_forward", "conv_depthwise")),
    ("norms", ("norm",)),
    ("softmax", ("softmax",)),
    ("interpolation", ("upsample",)),
    ("copies, layout changes and casts", ("copy_", "clone", "cat", "contiguous", "_to_copy", "index", "pad")),
)


def kind_of(name: str) -> str:
    return next((kind for kind, keys in KINDS if any(k in name for k in keys)), "elementwise and other")


def op_table(spec: str, precision: str, steps: int, rows: int) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    step = build(spec, precision)
    start, cpu = time.perf_counter(), time.process_time()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    wall, cpu = (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps
    totals: dict[tuple, list] = collections.defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        dtypes = sorted({str(d).removeprefix("c10::") for d in (event.input_dtypes or [])
                         if d and not str(d).startswith("Scalar")})
        key = (event.name, str(event.input_shapes[:3])[:70], "/".join(dtypes))
        totals[key][0] += event.self_cpu_time_total / 1e3 / steps
        totals[key][1] += 1
    total = sum(t for t, _ in totals.values())
    kinds: dict[str, list] = collections.defaultdict(lambda: [0.0, set()])
    for (name, _, dtypes), (ms, _) in totals.items():
        kinds[kind_of(name)][0] += ms
        kinds[kind_of(name)][1].update(d for d in dtypes.split("/") if d)
    print(f"\n## {spec}, {precision}, {torch.get_num_threads()} threads: {wall:.3f} s wall, {cpu:.3f} s CPU per step "
          f"(profiled, mean of {steps}); operators by self time, grouped by kind, then the top ones")
    print("| kind | share | dtypes |\n|---|---:|---|")
    for kind, (ms, dtypes) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        print(f"| {kind} | {100 * ms / total:.1f}% | {', '.join(sorted(dtypes))} |")
    print("\n| operator | input shapes | dtypes | ms/step | share |\n|---|---|---|---:|---:|")
    for (name, shapes, dtypes), (ms, _) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:rows]:
        print(f"| {name} | {shapes} | {dtypes} | {ms:.1f} | {100 * ms / total:.1f}% |")


def kernel_table(spec: str, precision: str, threads: int) -> None:
    """One step in a child process with oneDNN's verbose log; primitives by kind and implementation."""
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    cmd = [sys.executable, __file__, spec, "--precision", precision, "--threads", str(threads), "--verbose-child"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    lines = out.split("=====STEP=====", 1)[-1].splitlines()
    kinds: dict[tuple[str, str], list] = collections.defaultdict(lambda: [0.0, 0])
    for line in lines:
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or "exec" not in fields[:4]:
            continue
        at = fields.index("exec")
        kind, impl = fields[at + 2], fields[at + 3]
        kinds[kind, impl][0] += float(fields[-1])
        kinds[kind, impl][1] += 1
    total = sum(t for t, _ in kinds.values()) or 1.0
    print(f"\noneDNN primitives in one step of {spec} ({precision}):")
    print("| primitive | implementation | calls | share of oneDNN time |\n|---|---|---:|---:|")
    for (kind, impl), (ms, calls) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        print(f"| {kind} | {impl} | {calls} | {100 * ms / total:.1f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--precision", nargs="+", default=["bf16"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--no-kernels", action="store_true", help="skip the oneDNN verbose run")
    parser.add_argument("--verbose-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import torch

    torch.set_num_threads(args.threads)
    if args.verbose_child:
        step = build(args.models[0], args.precision[0])
        print("=====STEP=====", flush=True)
        step()
        sys.stdout.flush()
        return
    from bench_ab import cpu_flags, peaks

    p = peaks()
    print(f"# profile, torch {torch.__version__}, {args.threads} threads; CPU flags: {cpu_flags()}; matmul peak "
          f"(2048², {args.threads} threads): fp32 {p['fp32']:.0f}, bf16 {p['bf16']:.0f} GFLOP/s")
    for spec in args.models:
        for precision in args.precision:
            op_table(spec, precision, args.steps, args.rows)
            if not args.no_kernels:
                kernel_table(spec, precision, args.threads)


if __name__ == "__main__":
    main()
