"""Time to the first tracked frame of a DeAOT-T `samtrack track` run: imports, model load, first frame.

    python benchmarks/bench_first_frame.py               # 3 fresh processes, precision auto
    python benchmarks/bench_first_frame.py --runs 1 --precision fp32

Each run is a fresh Python process doing what `samtrack track blackswan.mp4 --box 300,100,600,400
--tracker deaot-t --checkpoint deaott.pth --segmenter <tiny SAM>` does, with the phases timed:

- imports: from launching the process until the CLI and every module a DeAOT run uses are imported
  (Python start-up, torch, samtrack; no transformers video model);
- model load: DeAOT-T from the parity fixture checkpoint and the test suite's tiny random SAM, through
  the ModelPool (what a session loads on first use);
- first frame: from models loaded to the first tracked frame, through TrackJob.run (the CLI's own path:
  open the video, checks, box prompt on frame 0 through SAM, reference, track frame 1).

Target (issue 13): the first tracked frame within 3 s of the models being loaded. The matmul peak is
printed beside the times, since this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import matmul_gflops, tiny_sam

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "data" / "videos" / "blackswan.mp4"
DEAOT_T = ROOT.parent / "shared" / "fixtures" / "deaot" / "deaott.pth"


def child(sam: str, out: str, precision: str) -> None:
    """One run, in this (fresh) process; prints the wall-clock stamps of each phase as JSON."""
    for module in ("samtrack.tracking.session", "samtrack.models.deaot.tracker", "samtrack.models.segmenter"):
        importlib.import_module(module)  # what a DeAOT run imports, timed as imports
    from samtrack import cli
    from samtrack.commands.track import job_from_args
    from samtrack.models.pool import ModelPool

    imported = time.time()
    args = cli.build_parser().parse_args([
        "--quiet", "track", str(VIDEO), "--out", out, "--box", "300,100,600,400", "--segmenter", sam,
        "--tracker", "deaot-t", "--checkpoint", str(DEAOT_T), "--precision", precision, "--end", "3",
        "--no-video", "--no-gif"])
    job = job_from_args(args)
    pool = ModelPool()  # load the weights now; the job's session takes its models from the pool
    precision = pool.tracker(job.settings).precision
    pool.segmenter(job.settings)
    loaded = time.time()
    stamps: list[float] = []
    job.run(models=pool, progress=lambda done, total, info: stamps.append(time.time()), render_progress=False)
    print(json.dumps({"imported": imported, "loaded": loaded, "reference": stamps[0], "tracked": stamps[1],
                      "transformers_video": "transformers.models.sam2_video" in sys.modules,
                      "precision": precision}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--child", nargs=2, metavar=("SAM", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.precision)
        return 0
    work = Path(tempfile.mkdtemp(prefix="samtrack-first-frame-"))
    sam = tiny_sam(work)
    rows = []
    peak = matmul_gflops()
    for run in range(args.runs):
        launched = time.time()
        done = subprocess.run([sys.executable, __file__, "--precision", args.precision, "--child", sam,
                               str(work / f"run{run}")], check=True, capture_output=True, text=True)
        t = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"imports": t["imported"] - launched, "load": t["loaded"] - t["imported"],
                     "reference": t["reference"] - t["loaded"], "first_tracked": t["tracked"] - t["loaded"],
                     "precision": t["precision"], "video_model_imported": t["transformers_video"]})
    peak_after = matmul_gflops()
    print(f"DeAOT-T `samtrack track blackswan.mp4 --box ...` (854x480), tiny random SAM; {args.runs} fresh "
          f"processes; matmul peak {peak:.0f} GFLOP/s before, {peak_after:.0f} after")
    print(f"{'run':>3} {'imports s':>10} {'model load s':>13} {'frame 0 ref s':>14} {'first tracked s':>16} "
          f"{'precision':>9}  transformers video model imported")
    for i, r in enumerate(rows):
        print(f"{i:>3} {r['imports']:>10.2f} {r['load']:>13.2f} {r['reference']:>14.2f} {r['first_tracked']:>16.2f} "
              f"{r['precision']:>9}  {r['video_model_imported']}")
    med = {k: statistics.median(r[k] for r in rows) for k in ("imports", "load", "reference", "first_tracked")}
    print(f"median: imports {med['imports']:.2f} s, model load {med['load']:.2f} s, first tracked frame "
          f"{med['first_tracked']:.2f} s after models loaded (target 3 s: "
          f"{'met' if med['first_tracked'] <= 3 else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
