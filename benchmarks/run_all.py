"""Run every samtrack benchmark and print one markdown report.

    python benchmarks/run_all.py            # full settings (long: tens of minutes on a 2-core CPU)
    python benchmarks/run_all.py --quick    # fewer frames and repetitions, for a first look

Each benchmark runs in its own process (so peak-memory numbers do not mix) and prints its own
markdown tables; this script adds the machine description and the time each one took.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

# name, full arguments, quick arguments
BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    ("bench_deaot.py", [], ["--frames", "2", "--memory-frames", "50"]),
    ("bench_trackers.py", [], ["--frames", "20", "--models", "deaot-t", "r50-deaotl", "sam2.1-tiny", "edgetam"]),
    ("bench_segmenter.py", [], ["--runs", "1", "--parts", "encoder", "click"]),
    ("bench_everything.py", ["--impl", "official", "official-heap", "fp32", "bf16", "sam2.1-tiny", "edgetam",
                             "--agreement", "3", "--overlap", "9"], ["--impl", "fp32", "bf16"]),
    ("bench_auto.py", [], ["--frames", "2", "--points-per-side", "4"]),  # SAM-Track too with $SAMTRACK_SRC
    ("bench_grounding_audio.py", [], ["--runs", "1", "--dtypes", "float32"]),
    ("bench_pipeline.py", ["--long", "2000"], ["--frames", "20"]),
    ("bench_render.py", [], ["--repeats", "1"]),
    ("bench_batch.py", [], ["--videos", "4", "--frames", "10"]),
    ("bench_first_frame.py", [], ["--runs", "1"]),
]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short settings for every benchmark")
    parser.add_argument("--only", nargs="+", help="run only these benchmark files")
    args = parser.parse_args()

    print("# samtrack benchmarks\n")
    print(f"- machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    print(f"- python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CUDA {'available' if torch.cuda.is_available() else 'not available'}")
    print(f"- mode: {'quick' if args.quick else 'full'}; models are full size with random weights\n")
    failed = []
    for name, full, quick in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        cmd = [sys.executable, str(HERE / name), *(quick if args.quick else full)]
        print(f"## {name}\n\n`{' '.join(cmd[1:])}`\n", flush=True)
        start = time.perf_counter()
        code = subprocess.call(cmd)
        print(f"\n({name}: {time.perf_counter() - start:.0f} s, exit code {code})\n", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
