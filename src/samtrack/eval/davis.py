"""Score predicted id masks against ground truth laid out the DAVIS way.

Layout: a root folder with one sub-folder of PNG masks per sequence (``<root>/<sequence>/<frame>.png``),
a single sequence folder, or a dataset root holding ``Annotations/480p`` or ``Annotations``. A
prediction is needed for every annotated frame that is scored, under the same file name.

DAVIS semi-supervised conventions (the DAVIS-2017 evaluation code and `vos-benchmark`): the first
annotated frame (the one given to the tracker) and the last are not scored; every object id that
appears in the ground truth is scored on every scored frame, and a frame where the object is absent
from both masks counts as perfect. Predicted ids that are not in the ground truth are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from samtrack.errors import InputError
from samtrack.eval.metrics import (
    BOUNDARY_THRESHOLD,
    Statistics,
    boundary_f,
    jaccard,
    statistics,
    tolerance_disk,
)
from samtrack.io.masks import load_id_mask

MEASURES = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
"""Summary measures, in the order DAVIS reports them."""


def annotated_frames(folder: Path) -> list[str]:
    """Sorted PNG file names in a sequence folder."""
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))


def find_sequences(root: Path) -> dict[str, Path]:
    """Map sequence name to its mask folder for a dataset root, a DAVIS root, or one sequence folder."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give a folder of mask PNGs or of sequence folders")
    for folder in (root / "Annotations" / "480p", root / "Annotations"):
        if folder.is_dir():
            root = folder
            break
    if annotated_frames(root):
        return {root.name: root}
    sequences = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and annotated_frames(p)}
    if not sequences:
        raise InputError(f"no mask PNGs in {root} or its sub-folders; expected <root>/<sequence>/<frame>.png")
    return sequences


@dataclass(frozen=True)
class ObjectScore:
    """Per-frame J and F of one object in one sequence, with their DAVIS statistics."""

    sequence: str
    object_id: int
    frames: tuple[str, ...]
    j: np.ndarray = field(repr=False)
    f: np.ndarray = field(repr=False)

    @cached_property
    def j_stats(self) -> Statistics:
        return statistics(self.j)

    @cached_property
    def f_stats(self) -> Statistics:
        return statistics(self.f)

    def measures(self) -> dict[str, float]:
        """This object's values of `MEASURES`."""
        return {
            "J&F-Mean": (self.j_stats.mean + self.f_stats.mean) / 2,
            "J-Mean": self.j_stats.mean,
            "J-Recall": self.j_stats.recall,
            "J-Decay": self.j_stats.decay,
            "F-Mean": self.f_stats.mean,
            "F-Recall": self.f_stats.recall,
            "F-Decay": self.f_stats.decay,
        }


@dataclass(frozen=True)
class EvalReport:
    """Scores of every object of every evaluated sequence."""

    objects: tuple[ObjectScore, ...]
    skip_first_and_last: bool = True
    boundary_threshold: float = BOUNDARY_THRESHOLD

    def summary(self) -> dict[str, float]:
        """DAVIS global measures: each is the mean over all objects of all sequences."""
        if not self.objects:
            raise InputError("nothing was scored: no object ids in the ground truth")
        per_object = [obj.measures() for obj in self.objects]
        return {name: float(np.mean([m[name] for m in per_object])) for name in MEASURES}


def _load_with_histogram(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An id mask and its pixel count per id (0..255)."""
    mask = load_id_mask(path)
    return mask, np.bincount(mask.ravel(), minlength=256)


def _score_frame(
    gt: np.ndarray, pred_path: Path, object_ids: Sequence[int], boundary_threshold: float
) -> list[tuple[float, float]]:
    """(J, F) of each object on one frame."""
    pred = load_id_mask(pred_path)
    if pred.shape != gt.shape:
        raise InputError(
            f"prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} but the ground truth is "
            f"{gt.shape[1]}x{gt.shape[0]}; predictions must have the annotation's size"
        )
    disk = tolerance_disk(gt.shape, boundary_threshold)
    scores = []
    for obj in object_ids:
        pred_obj, gt_obj = pred == obj, gt == obj
        scores.append((jaccard(pred_obj, gt_obj), boundary_f(pred_obj, gt_obj, disk)))
    return scores


def evaluate_sequence(
    name: str,
    pred_dir: Path,
    gt_dir: Path,
    *,
    max_frames: int | None = None,
    skip_first_and_last: bool = True,
    boundary_threshold: float = BOUNDARY_THRESHOLD,
    executor: ThreadPoolExecutor | None = None,
) -> list[ObjectScore]:
    """Score one sequence's predictions; ``max_frames`` keeps only the first annotated frames."""
    frames = annotated_frames(gt_dir)[:max_frames]
    scored = frames[1:-1] if skip_first_and_last else frames
    if not scored:
        raise InputError(
            f"sequence {name} has {len(frames)} annotated frame(s); DAVIS scoring skips the first and the "
            "last, so it needs at least 3 (use more frames, or score all frames with --all-frames)"
        )
    missing = [frame for frame in scored if not (pred_dir / frame).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        present = next((k for k, frame in enumerate(frames) if not (pred_dir / frame).is_file()), len(frames))
        hint = (f"; the predictions cover the first {present} frames (a partial run?): score those with "
                f"--max-frames {present}" if present >= 3 else "")
        raise InputError(
            f"prediction missing for frame {missing[0]}{more} of sequence {name}: expected "
            f"{pred_dir / missing[0]} (one mask per annotated frame, same file name){hint}"
        )
    run = executor.map if executor else map
    loaded = list(run(_load_with_histogram, [gt_dir / frame for frame in frames]))
    gt_masks = {frame: mask for frame, (mask, _) in zip(frames, loaded)}
    ids = [int(i) for i in np.flatnonzero(sum(histogram for _, histogram in loaded)[1:]) + 1]

    def score(frame: str) -> list[tuple[float, float]]:
        return _score_frame(gt_masks[frame], pred_dir / frame, ids, boundary_threshold)

    values = np.asarray(list(run(score, scored)), dtype=np.float64).reshape(len(scored), len(ids), 2)
    return [
        ObjectScore(name, obj, tuple(scored), values[:, k, 0].copy(), values[:, k, 1].copy())
        for k, obj in enumerate(ids)
    ]


def evaluate(
    pred_root: Path,
    gt_root: Path,
    *,
    sequences: Sequence[str] | None = None,
    max_frames: int | None = None,
    skip_first_and_last: bool = True,
    boundary_threshold: float = BOUNDARY_THRESHOLD,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalReport:
    """Score every sequence of ``gt_root`` (or the named ``sequences``) against ``pred_root``.

    ``progress`` is called with each sequence name once it is scored. ``workers`` threads score
    frames in parallel (default: the number of CPUs).
    """
    gt_sequences = find_sequences(Path(gt_root))
    pred_root = Path(pred_root)
    if not pred_root.is_dir():
        raise InputError(f"prediction folder {pred_root} does not exist")
    if (pred_root / "masks").is_dir() and any((pred_root / name).is_file() for name in ("run.json", "session.json")):
        pred_root = pred_root / "masks"  # a samtrack run directory: its masks are the predictions
    names = list(sequences) if sequences else list(gt_sequences)
    unknown = [n for n in names if n not in gt_sequences]
    if unknown:
        raise InputError(f"no ground truth for sequence(s) {', '.join(unknown)} in {gt_root}")

    def pred_dir_for(name: str) -> Path:
        folder = pred_root / name
        if not folder.is_dir() and len(gt_sequences) == 1 and annotated_frames(pred_root):
            return pred_root  # one sequence folder scored against one sequence folder
        if not folder.is_dir():
            raise InputError(
                f"no predictions for sequence {name}: {folder} is missing "
                "(score a subset with --sequences)"
            )
        return folder

    objects: list[ObjectScore] = []
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as executor:
        for name in names:
            objects += evaluate_sequence(
                name,
                pred_dir_for(name),
                gt_sequences[name],
                max_frames=max_frames,
                skip_first_and_last=skip_first_and_last,
                boundary_threshold=boundary_threshold,
                executor=executor,
            )
            if progress:
                progress(name)
    return EvalReport(tuple(objects), skip_first_and_last, boundary_threshold)
