"""DAVIS J&F scoring: checked against the `vos-benchmark` package on perturbed DAVIS-2016 predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DAVIS, davis_annotations
from skimage.morphology import disk as skimage_disk
from vos_benchmark.evaluator import Evaluator
from vos_benchmark.utils import _seg2bmap

from samtrack.cli import main
from samtrack.errors import InputError
from samtrack.eval.davis import MEASURES, evaluate
from samtrack.eval.metrics import boundary_f, boundary_map, statistics, tolerance_disk
from samtrack.io.masks import load_id_mask, save_id_mask

SEQUENCES = ["blackswan", "car-shadow", "dog"]
N_FRAMES = 8


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move the mask by (dy, dx) pixels; what leaves the image is lost, what enters is background."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def _erase_top_half(mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask.any(axis=1))
    out = mask.copy()
    out[: (rows[0] + rows[-1]) // 2] = 0
    return out


PERTURBATIONS = {
    "shift-4-right-3-down": lambda m: _shift(m, 3, 4),
    "shift-20-left": lambda m: _shift(m, 0, -20),
    "erase-top-half": _erase_top_half,
    "empty": np.zeros_like,
}


def _write_predictions(root: Path, perturb) -> dict[str, list[np.ndarray]]:
    """Perturbed ground truth of the first N_FRAMES frames of each sequence, saved as palette PNGs."""
    masks = {}
    for seq in SEQUENCES:
        frames = sorted(davis_annotations(seq).glob("*.png"))[:N_FRAMES]
        masks[seq] = []
        for path in frames:
            pred = perturb(load_id_mask(path))
            save_id_mask(root / seq / path.name, pred)
            masks[seq].append(pred)
    return masks


def _vos_benchmark(seq: str, preds: list[np.ndarray]) -> Evaluator:
    """vos-benchmark's evaluator fed the same frames DAVIS scores (first and last skipped)."""
    frames = sorted(davis_annotations(seq).glob("*.png"))[:N_FRAMES]
    evaluator = Evaluator(name=seq)
    for path, pred in list(zip(frames, preds))[1:-1]:
        evaluator.feed_frame(pred, load_id_mask(path))
    return evaluator


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_perturbed_predictions_score_as_vos_benchmark_does(tmp_path, davis_root, name):
    preds = _write_predictions(tmp_path, PERTURBATIONS[name])
    report = evaluate(tmp_path, davis_root, sequences=SEQUENCES, max_frames=N_FRAMES, workers=2)
    assert [(o.sequence, o.object_id) for o in report.objects] == [(s, 1) for s in SEQUENCES]
    for obj in report.objects:
        reference = _vos_benchmark(obj.sequence, preds[obj.sequence])
        ref_iou, ref_f = reference.conclude()
        assert obj.frames == tuple(f"{i:05d}.png" for i in range(1, N_FRAMES - 1))
        np.testing.assert_allclose(obj.j, reference.object_iou[1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(obj.f, reference.boundary_f[1], rtol=0, atol=1e-12)
        assert 100 * obj.j_stats.mean == pytest.approx(ref_iou[1], abs=1e-9)
        assert 100 * obj.f_stats.mean == pytest.approx(ref_f[1], abs=1e-9)
    summary = report.summary()
    if name == "empty":
        assert summary["J-Mean"] == summary["F-Mean"] == summary["J&F-Mean"] == 0.0
    else:
        assert 0.0 < summary["J&F-Mean"] < 1.0


def test_ground_truth_against_itself_is_perfect(davis_root):
    report = evaluate(DAVIS / "Annotations" / "480p", davis_root, sequences=SEQUENCES, max_frames=N_FRAMES)
    assert report.summary() == {m: (0.0 if m.endswith("Decay") else 1.0) for m in MEASURES}
    for obj in report.objects:
        assert np.all(obj.j == 1.0) and np.all(obj.f == 1.0)


def test_multi_object_masks_touching_the_border_match_vos_benchmark(tmp_path):
    rng = np.random.default_rng(0)
    gt_dir, pred_dir = tmp_path / "gt" / "blobs", tmp_path / "pred" / "blobs"
    evaluator = Evaluator()
    for i in range(5):
        gt = np.zeros((60, 90), np.uint8)
        gt[:30, :40] = 1  # touches the top-left corner
        gt[35:, 50:] = 2  # touches the bottom-right corner
        gt[rng.random(gt.shape) < 0.05] = 3  # speckle: many tiny regions
        pred = gt.copy()
        pred[rng.random(gt.shape) < 0.1] = 0
        pred[5 + i : 25, 60:85] = 2
        save_id_mask(gt_dir / f"{i:05d}.png", gt)
        save_id_mask(pred_dir / f"{i:05d}.png", pred)
        if 0 < i < 4:
            evaluator.feed_frame(pred, gt)
    report = evaluate(tmp_path / "pred", tmp_path / "gt", workers=1)
    assert [o.object_id for o in report.objects] == [1, 2, 3]
    for obj in report.objects:
        np.testing.assert_allclose(obj.j, evaluator.object_iou[obj.object_id], rtol=0, atol=1e-12)
        np.testing.assert_allclose(obj.f, evaluator.boundary_f[obj.object_id], rtol=0, atol=1e-12)


def test_boundary_map_and_tolerance_match_the_davis_definitions():
    rng = np.random.default_rng(1)
    for _ in range(5):
        mask = rng.random((23, 37)) < 0.5
        np.testing.assert_array_equal(boundary_map(mask), _seg2bmap(mask))
    for shape in [(480, 854), (1080, 1920), (100, 100)]:
        radius = np.ceil(0.008 * np.linalg.norm(shape))
        np.testing.assert_array_equal(tolerance_disk(shape), skimage_disk(radius))


def test_boundary_f_edge_cases():
    empty = np.zeros((50, 50), bool)
    square = empty.copy()
    square[10:20, 10:20] = True
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(square, empty) == 0.0
    assert boundary_f(empty, square) == 0.0
    assert boundary_f(square, square) == 1.0


def test_statistics_follow_davis_mean_recall_and_decay():
    # 8 frames: DAVIS splits them into the overlapping quarters [0:3], [2:5], [4:6], [5:8].
    values = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.2, 0.2, 0.2])
    stats = statistics(values)
    assert stats.mean == pytest.approx(values.mean())
    assert stats.recall == pytest.approx(3 / 8)  # 0.5 itself is not above the threshold
    assert stats.decay == pytest.approx(1.0 - 0.2)
    assert statistics(np.array([0.7])) == (pytest.approx(0.7), 1.0, 0.0)


def test_missing_prediction_frame_is_an_error_naming_it(tmp_path, davis_root):
    _write_predictions(tmp_path, lambda m: m)
    (tmp_path / "dog" / "00003.png").unlink()
    with pytest.raises(InputError, match=r"00003\.png.*dog"):
        evaluate(tmp_path, davis_root, sequences=SEQUENCES, max_frames=N_FRAMES)


def test_missing_prediction_sequence_and_too_few_frames_are_errors(tmp_path, davis_root):
    _write_predictions(tmp_path, lambda m: m)
    with pytest.raises(InputError, match="no predictions for sequence bmx-trees"):
        evaluate(tmp_path, davis_root, sequences=["blackswan", "bmx-trees"], max_frames=N_FRAMES)
    with pytest.raises(InputError, match="at least 3"):
        evaluate(tmp_path, davis_root, sequences=["blackswan"], max_frames=2)


def test_cli_scores_one_sequence_folder_and_writes_csv_and_json(tmp_path, capsys):
    preds = _write_predictions(tmp_path / "pred", lambda m: _shift(m, 3, 4))
    out_csv, out_json = tmp_path / "scores.csv", tmp_path / "scores.json"
    code = main(["eval", str(tmp_path / "pred" / "blackswan"), str(davis_annotations("blackswan")),
                 "--max-frames", str(N_FRAMES), "--csv", str(out_csv), "--json", str(out_json)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "blackswan" in printed and "J&F-Mean" in printed

    ref_iou, ref_f = _vos_benchmark("blackswan", preds["blackswan"]).conclude()
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["sequence"] for r in rows] == ["blackswan", "Global"]
    assert float(rows[0]["J-Mean"]) == pytest.approx(ref_iou[1] / 100, abs=1e-12)
    assert float(rows[0]["F-Mean"]) == pytest.approx(ref_f[1] / 100, abs=1e-12)
    assert float(rows[1]["J&F-Mean"]) == pytest.approx((ref_iou[1] + ref_f[1]) / 200, abs=1e-12)
    assert f"J&F-Mean {(ref_iou[1] + ref_f[1]) / 2:.1f}" in printed

    document = json.loads(out_json.read_text())
    assert document["summary"]["J&F-Mean"] == pytest.approx(float(rows[1]["J&F-Mean"]), abs=1e-15)
    (obj,) = document["objects"]
    assert obj["frames"] == [f"{i:05d}.png" for i in range(1, N_FRAMES - 1)]
    assert len(obj["J"]) == len(obj["F"]) == N_FRAMES - 2


def test_cli_reports_a_missing_frame_in_one_line(tmp_path, capsys):
    _write_predictions(tmp_path, lambda m: m)
    (tmp_path / "car-shadow" / "00005.png").unlink()
    code = main(["eval", str(tmp_path), str(DAVIS), "--sequences", "car-shadow", "--max-frames", "8"])
    assert code == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("samtrack: error: ") and "00005.png" in message and "car-shadow" in message
