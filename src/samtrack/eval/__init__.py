"""Evaluation: DAVIS J&F scoring and semi-supervised runs on DAVIS-layout datasets.

    report = evaluate("predictions/", "DAVIS/")        # DAVIS conventions, same values as vos-benchmark
    print(summary_line(report))                         # J&F-Mean 85.3 J-Mean ... in percent
    report.summary()["J&F-Mean"]                        # fractions in 0..1
"""

from samtrack.eval.davis import MEASURES, EvalReport, ObjectScore, evaluate
from samtrack.eval.report import format_table, summary_line, to_csv, to_json
from samtrack.eval.vos import RunStats, run_semi_supervised

__all__ = [
    "MEASURES",
    "EvalReport",
    "ObjectScore",
    "RunStats",
    "evaluate",
    "format_table",
    "run_semi_supervised",
    "summary_line",
    "to_csv",
    "to_json",
]
