"""`samtrack eval PRED_DIR GT_DIR`: DAVIS J&F of predicted masks against ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from samtrack.errors import InputError
from samtrack.eval.davis import EvalReport, evaluate
from samtrack.eval.report import format_table, summary_line, to_csv, to_json
from samtrack.io.atomic import write_text_atomic


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
        help="score predicted masks with the DAVIS measures (J&F)",
        description="Score predicted id masks against ground truth with the DAVIS measures: region "
        "similarity J (IoU) and boundary accuracy F, each as mean, recall and decay per object, and "
        "their mean J&F over all objects. DAVIS semi-supervised conventions: the first and last "
        "annotated frames are not scored. The table prints percent; --csv/--json write fractions "
        "(0..1) with per-frame values in the JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("pred_dir", type=Path, metavar="PRED_DIR",
                   help="predictions: one folder of PNG masks per sequence, or one sequence folder")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR",
                   help="ground truth in the same layout (a DAVIS root also works)")
    p.add_argument("--sequences", type=_names, metavar="A,B,...",
                   help="score only these sequences (default: every ground-truth sequence)")
    p.add_argument("--max-frames", type=_positive_int, metavar="N",
                   help="score only the first N annotated frames of each sequence")
    p.add_argument("--all-frames", action="store_true",
                   help="also score the first and last frames (not DAVIS semi-supervised practice)")
    p.add_argument("--csv", type=Path, metavar="FILE", help="write per-object scores and the summary as CSV")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write the summary and per-object, per-frame scores as JSON")
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="threads scoring frames in parallel (default: number of CPUs)")
    return p


def score_and_report(args: argparse.Namespace, pred_dir: Path, gt_dir: Path) -> EvalReport:
    """Score, print the table and summary line, and write the requested files."""
    sequences = args.sequences
    with tqdm(total=len(sequences) if sequences else None, desc="scoring", unit="seq",
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


def run(args: argparse.Namespace) -> int:
    score_and_report(args, args.pred_dir, args.gt_dir)
    return 0
