"""Semi-supervised video object segmentation on a DAVIS-layout dataset.

For each sequence the tracker gets frame 0 and its first mask (the ground truth, or a mask a
segmenter makes from simulated clicks), then propagates frame by frame (`track`, then
`update_memory` with its own prediction). Predictions are written as palette PNGs in DAVIS layout,
``<out>/<sequence>/<frame>.png``, frame 0 included, ready for `samtrack.eval.davis.evaluate`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samtrack.errors import InputError
from samtrack.eval.clicks import ClickSegmenter, clicks_id_mask
from samtrack.eval.davis import find_sequences
from samtrack.io.masks import load_id_mask, save_id_mask
from samtrack.io.sources import FrameSource, open_source
from samtrack.models.tracker import Tracker
from samtrack.tracking.propagation import decoded
from samtrack.tracking.propagation import propagate as propagate_frames


@dataclass(frozen=True)
class RunStats:
    """What a run did: the sequences, how many frames were propagated, and the time it took."""

    sequences: tuple[str, ...]
    propagated_frames: int
    seconds: float

    @property
    def fps(self) -> float:
        """Propagated frames per second (time in `track` + `update_memory` only)."""
        return self.propagated_frames / self.seconds if self.seconds > 0 else float("nan")


def parse_init(text: str) -> int:
    """Number of simulated clicks for ``--init``: ``gt`` gives 0 (use the ground truth), ``clicks:N`` gives N."""
    if text == "gt":
        return 0
    kind, _, count = text.partition(":")
    if kind == "clicks" and count.isdigit() and int(count) > 0:
        return int(count)
    raise InputError(f"--init must be 'gt' or 'clicks:N' with N at least 1 (e.g. clicks:3), not {text!r}")


def dataset_sequences(root: Path, names: Sequence[str] | None = None) -> dict[str, Path]:
    """Annotation folder of each sequence to run: every sequence of the DAVIS root, or ``names``."""
    root = Path(root)
    if not (root / "JPEGImages").is_dir():
        raise InputError(f"{root} is not a DAVIS root: it needs JPEGImages/ and Annotations/ folders")
    available = find_sequences(root)
    if not names:
        return available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError(
            f"no annotated sequence {', '.join(unknown)} in {root}; available: {', '.join(list(available)[:30])}"
        )
    return {n: available[n] for n in names}


def propagate(
    tracker: Tracker,
    source: FrameSource,
    first_mask: np.ndarray,
    out_dir: Path,
    max_frames: int | None = None,
    on_frame: Callable[[], None] | None = None,
) -> tuple[int, float]:
    """Track ``first_mask`` from frame 0 through ``source``; returns (frames propagated, seconds tracking)."""
    n_frames = min(len(source), max_frames or len(source))
    seconds = 0.0
    frames = decoded(source.__getitem__, range(n_frames))  # a thread decodes ahead, outside the timing
    results = propagate_frames(tracker, frames, start=0, reference=lambda i, _: first_mask)
    while True:
        started = time.perf_counter()
        step = next(results, None)
        if step is None:
            break
        index, ids = step
        if index > 0:
            seconds += time.perf_counter() - started
        save_id_mask(out_dir / f"{source.names[index]}.png", ids)
        if on_frame:
            on_frame()
    return n_frames - 1, seconds


def count_frames(root: Path, sequences: Sequence[str], max_frames: int | None = None) -> int:
    """Frames a run over ``sequences`` will write (for progress bars)."""
    total = 0
    for name in sequences:
        with open_source(root, sequence=name) as source:
            total += min(len(source), max_frames or len(source))
    return total


def run_semi_supervised(
    root: Path,
    out: Path,
    tracker: Tracker,
    *,
    sequences: Sequence[str] | None = None,
    max_frames: int | None = None,
    segmenter: ClickSegmenter | None = None,
    clicks: int = 0,
    on_frame: Callable[[], None] | None = None,
) -> RunStats:
    """Propagate every sequence (or ``sequences``) of a DAVIS root and write predictions under ``out``.

    With ``clicks`` > 0 the first mask comes from ``segmenter`` and that many simulated clicks per
    object instead of the ground truth.
    """
    if clicks and segmenter is None:
        raise InputError("simulated clicks need a segmenter")
    annotations = dataset_sequences(root, sequences)
    total_frames, total_seconds = 0, 0.0
    for name, gt_dir in annotations.items():
        with open_source(root, sequence=name) as source:
            first_gt = gt_dir / f"{source.names[0]}.png"
            if not first_gt.is_file():
                raise InputError(f"sequence {name} has no annotation for its first frame: {first_gt} is missing")
            gt_ids = load_id_mask(first_gt)
            first = clicks_id_mask(segmenter, source[0], gt_ids, clicks) if clicks else gt_ids
            frames, seconds = propagate(tracker, source, first, Path(out) / name, max_frames, on_frame)
        total_frames += frames
        total_seconds += seconds
    return RunStats(tuple(annotations), total_frames, total_seconds)
