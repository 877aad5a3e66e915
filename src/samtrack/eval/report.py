"""Text, CSV and JSON forms of an `EvalReport`.

The printed table is in percent (as papers report DAVIS numbers); CSV and JSON keep fractions in
0..1 at full precision (as the DAVIS-2017 evaluation's result files do).
"""

from __future__ import annotations

import csv
import io
import json

from samtrack.eval.davis import MEASURES, EvalReport

SUMMARY_NAME = "Global"
"""Sequence name of the CSV row that holds the summary (mean over all objects)."""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _frames_note(report: EvalReport) -> str:
    return "first and last frames not scored" if report.skip_first_and_last else "all frames scored"


def format_table(report: EvalReport) -> str:
    """One row per object of each sequence, values in percent."""
    width = max([len("sequence"), *(len(obj.sequence) for obj in report.objects)])
    header = f"{'sequence':<{width}}  {'obj':>3}  " + "  ".join(f"{m:>8}" for m in MEASURES) + "  frames"
    lines = [header]
    for obj in report.objects:
        values = obj.measures()
        cells = "  ".join(f"{100 * values[m]:>8.1f}" for m in MEASURES)
        lines.append(f"{obj.sequence:<{width}}  {obj.object_id:>3}  {cells}  {len(obj.frames):>6}")
    return "\n".join(lines)


def summary_line(report: EvalReport) -> str:
    """The DAVIS global measures on one line, in percent."""
    summary = report.summary()
    values = " ".join(f"{m} {100 * summary[m]:.1f}" for m in MEASURES)
    n_objects = len(report.objects)
    n_sequences = len({obj.sequence for obj in report.objects})
    return (
        f"{values} ({_count(n_objects, 'object')} in {_count(n_sequences, 'sequence')}, "
        f"{_frames_note(report)})"
    )


def to_csv(report: EvalReport) -> str:
    """Per-object rows, then a `SUMMARY_NAME` row with the global measures; fractions in 0..1."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sequence", "object", "frames", *MEASURES])
    for obj in report.objects:
        values = obj.measures()
        writer.writerow([obj.sequence, obj.object_id, len(obj.frames), *(repr(values[m]) for m in MEASURES)])
    summary = report.summary()
    total = sum(len(obj.frames) for obj in report.objects)
    writer.writerow([SUMMARY_NAME, "", total, *(repr(summary[m]) for m in MEASURES)])
    return buffer.getvalue()


def to_json(report: EvalReport) -> str:
    """Summary, settings, and for each object its measures and per-frame J and F; fractions in 0..1."""
    document = {
        "summary": report.summary(),
        "settings": {
            "skip_first_and_last": report.skip_first_and_last,
            "boundary_threshold": report.boundary_threshold,
        },
        "objects": [
            {
                "sequence": obj.sequence,
                "object": obj.object_id,
                **obj.measures(),
                "frames": list(obj.frames),
                "J": obj.j.tolist(),
                "F": obj.f.tolist(),
            }
            for obj in report.objects
        ],
    }
    return json.dumps(document, indent=2) + "\n"
