"""`samtrack eval PRED_DIR GT_DIR`: DAVIS J&F of predicted masks against ground truth.

`samtrack eval --run DAVIS_ROOT` first produces the predictions: semi-supervised video object
segmentation with a samtrack tracker (the first frame's ground truth, or a mask from simulated
clicks, is propagated through each sequence), then scores them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from samtrack.errors import InputError, PromptError
from samtrack.eval.davis import EvalReport, evaluate, find_sequences
from samtrack.eval.report import format_table, summary_line, to_csv, to_json
from samtrack.eval.vos import count_frames, dataset_sequences, parse_init, run_semi_supervised
from samtrack.io.atomic import write_text_atomic
from samtrack.tracking.settings import PRECISION_CHOICES


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give sequence names separated by commas, e.g. blackswan,dog")
    return names


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="score predicted masks with the DAVIS measures (J&F), or run a tracker on DAVIS and score it",
        description="Score predicted id masks against ground truth with the DAVIS measures: region "
        "similarity J (IoU) and boundary accuracy F, each as mean, recall and decay per object, and "
        "their mean J&F over all objects. DAVIS semi-supervised conventions: the first and last "
        "annotated frames are not scored. The table prints percent; --csv/--json write fractions "
        "(0..1) with per-frame values in the JSON. With --run DAVIS_ROOT the predictions are made "
        "first: the tracker gets each sequence's first frame and its ground-truth mask (or a mask "
        "from simulated clicks, --init clicks:N) and propagates it.",
    )
    p.add_argument("pred_dir", type=Path, nargs="?", metavar="PRED_DIR",
                   help="predictions: one folder of PNG masks per sequence, one sequence folder, or a samtrack run directory "
                        "(its masks/)")
    p.add_argument("gt_dir", type=Path, nargs="?", metavar="GT_DIR",
                   help="ground truth in the same layout (a DAVIS root also works)")
    p.add_argument("--sequences", type=_names, metavar="A,B,...",
                   help="only these sequences (default: every ground-truth sequence)")
    p.add_argument("--max-frames", type=_positive_int, metavar="N",
                   help="only the first N frames of each sequence")
    p.add_argument("--all-frames", action="store_true",
                   help="also score the first and last frames (not DAVIS semi-supervised practice)")
    p.add_argument("--csv", type=Path, metavar="FILE", help="write per-object scores and the summary as CSV")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write the summary and per-object, per-frame scores as JSON")
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="threads scoring frames in parallel (default: number of CPUs)")
    r = p.add_argument_group("semi-supervised run (--run)")
    r.add_argument("--run", type=Path, metavar="DAVIS_ROOT",
                   help="track every sequence of this DAVIS root (JPEGImages/, Annotations/), then score")
    r.add_argument("--out", type=Path, metavar="DIR",
                   help="where --run writes predictions, <DIR>/<sequence>/<frame>.png (default: eval-<tracker>)")
    r.add_argument("--tracker", default="r50-deaotl",
                   help="tracker name (see `samtrack models`; default: r50-deaotl)")
    r.add_argument("--checkpoint", type=Path, help="tracker checkpoint file (default: the cached release)")
    r.add_argument("--init", default="gt", metavar="gt|clicks:N",
                   help="first-frame masks: the ground truth, or N simulated clicks per object through "
                        "--segmenter (each at the centre of the largest remaining error); default: gt")
    r.add_argument("--segmenter", default="sam-vit-b",
                   help="segmenter for --init clicks:N (name or path; default: sam-vit-b)")
    r.add_argument("--device", default="auto", help="torch device for the models: auto (default: cuda, then mps, "
                   "then cpu), cpu, cuda, mps")
    r.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="tracker and segmenter precision (auto: fp16 on CUDA, bf16 on CPUs where it is faster, "
                        "else fp32; fp32 is exact)")
    return p


def score_and_report(
    args: argparse.Namespace, pred_dir: Path, gt_dir: Path, sequences: list[str] | None = None
) -> EvalReport:
    """Score, print the table and summary line, and write the requested files."""
    sequences = sequences or list(find_sequences(gt_dir))
    with tqdm(total=len(sequences), desc="scoring", unit="seq",
              disable=args.quiet, file=sys.stderr) as bar:
        report = evaluate(
            pred_dir,
            gt_dir,
            sequences=sequences,
            max_frames=args.max_frames,
            skip_first_and_last=not args.all_frames,
            workers=args.workers,
            progress=lambda name: bar.update(1),
        )
    if not args.quiet:
        print(format_table(report))
    print(summary_line(report))
    for path, text in ((args.csv, to_csv), (args.json, to_json)):
        if path is not None:
            if path.is_dir():
                raise InputError(f"{path} is a folder; give a file name for the scores")
            write_text_atomic(path, text(report))
    return report


def _run_and_score(args: argparse.Namespace) -> None:
    clicks = parse_init(args.init)
    sequences = list(dataset_sequences(args.run, args.sequences))
    out = args.out or Path(f"eval-{args.tracker}")
    import samtrack  # models (torch) load on first use, so plain scoring stays light

    tracker = samtrack.load_tracker(args.tracker, checkpoint=args.checkpoint, device=args.device,
                                    precision=args.precision)
    segmenter = samtrack.Segmenter.load(args.segmenter, device=args.device, precision=args.precision) if clicks else None
    total = count_frames(args.run, sequences, args.max_frames)
    with tqdm(total=total, desc="tracking", unit="frame", disable=args.quiet, file=sys.stderr) as bar:
        stats = run_semi_supervised(args.run, out, tracker, sequences=sequences, max_frames=args.max_frames,
                                    segmenter=segmenter, clicks=clicks, on_frame=lambda: bar.update(1))
    print(f"{args.tracker}: propagated {stats.propagated_frames} frames of {len(sequences)} sequences in "
          f"{stats.seconds:.1f} s ({stats.fps:.2f} frames/s on {args.device}, {tracker.precision}); predictions in {out}")
    score_and_report(args, out, args.run, sequences)


def run(args: argparse.Namespace) -> int:
    if args.run is not None:
        if args.pred_dir is not None:
            raise PromptError("give either PRED_DIR GT_DIR, or --run DAVIS_ROOT (its predictions go to --out)")
        _run_and_score(args)
    elif args.pred_dir is None or args.gt_dir is None:
        raise PromptError("give PRED_DIR and GT_DIR to score, or --run DAVIS_ROOT to track and score")
    else:
        score_and_report(args, args.pred_dir, args.gt_dir, args.sequences)
    return 0
