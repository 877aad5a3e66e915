"""`samtrack eval --run`: semi-supervised VOS on DAVIS with a real tracker, and the click simulation."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DEAOT_FIXTURES, davis_annotations, davis_frames
from PIL import Image

from samtrack.cli import main
from samtrack.errors import InputError
from samtrack.eval.clicks import Click, clicks_id_mask, next_click, segment_with_clicks
from samtrack.eval.davis import evaluate
from samtrack.eval.vos import parse_init
from samtrack.io.masks import load_id_mask, save_id_mask

SEQUENCES = ["blackswan", "car-shadow"]


def _small_davis(root: Path, n_frames: int, scale: float = 0.25) -> Path:
    """The first frames of SEQUENCES, downscaled (CPU time), in DAVIS layout under ``root``."""
    for seq in SEQUENCES:
        for jpg in sorted(davis_frames(seq).glob("*.jpg"))[:n_frames]:
            rgb = np.asarray(Image.open(jpg))
            size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
            out = root / "JPEGImages" / "480p" / seq / jpg.name
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)).save(out, quality=95)
            ids = load_id_mask(davis_annotations(seq) / f"{jpg.stem}.png")
            save_id_mask(root / "Annotations" / "480p" / seq / f"{jpg.stem}.png",
                         cv2.resize(ids, size, interpolation=cv2.INTER_NEAREST))
    return root


@pytest.mark.slow
def test_run_tracks_two_davis_sequences_and_writes_a_score_table(tmp_path, capsys):
    root = _small_davis(tmp_path / "davis", n_frames=4)
    out, table = tmp_path / "pred", tmp_path / "scores.csv"
    code = main(["--quiet", "eval", "--run", str(root), "--sequences", ",".join(SEQUENCES), "--max-frames", "3",
                 "--tracker", "deaot-t", "--checkpoint", str(DEAOT_FIXTURES / "deaott.pth"),
                 "--out", str(out), "--csv", str(table)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "deaot-t: propagated 4 frames of 2 sequences" in printed
    assert "J&F-Mean" in printed and "(2 objects in 2 sequences" in printed
    for seq in SEQUENCES:
        written = sorted(p.name for p in (out / seq).glob("*.png"))
        assert written == ["00000.png", "00001.png", "00002.png"]  # --max-frames, not the 4 available
        with Image.open(out / seq / "00001.png") as im:
            assert im.mode == "P" and im.size == Image.open(root / "JPEGImages/480p" / seq / "00001.jpg").size
        gt0 = load_id_mask(root / "Annotations/480p" / seq / "00000.png")
        np.testing.assert_array_equal(load_id_mask(out / seq / "00000.png"), gt0)  # frame 0 is the given mask
    rows = list(csv.DictReader(table.open()))
    assert [r["sequence"] for r in rows] == [*SEQUENCES, "Global"]
    rescored = evaluate(out, root, sequences=SEQUENCES, max_frames=3).summary()
    assert float(rows[-1]["J&F-Mean"]) == pytest.approx(rescored["J&F-Mean"], abs=1e-12)


@pytest.mark.slow
def test_run_with_simulated_clicks_starts_from_the_segmenters_mask(tmp_path, tiny_sam, capsys):
    import samtrack

    root = _small_davis(tmp_path / "davis", n_frames=3)
    out = tmp_path / "pred"
    code = main(["--quiet", "eval", "--run", str(root), "--sequences", "blackswan", "--init", "clicks:2",
                 "--segmenter", str(tiny_sam), "--tracker", "deaot-t",
                 "--checkpoint", str(DEAOT_FIXTURES / "deaott.pth"), "--out", str(out)])
    assert code == 0
    assert "(1 object in 1 sequence," in capsys.readouterr().out
    frame0 = np.asarray(Image.open(root / "JPEGImages/480p/blackswan/00000.jpg"))
    gt0 = load_id_mask(root / "Annotations/480p/blackswan/00000.png")
    expected = clicks_id_mask(samtrack.Segmenter.load(str(tiny_sam), device="cpu"), frame0, gt0, 2)
    assert not np.array_equal(expected, gt0)  # so the check below tells clicks from ground truth
    np.testing.assert_array_equal(load_id_mask(out / "blackswan" / "00000.png"), expected)
    assert len(list((out / "blackswan").glob("*.png"))) == 3


def test_run_rejects_bad_requests(tmp_path, capsys):
    root = _small_davis(tmp_path / "davis", n_frames=1)
    for argv, message, code in [
        (["--run", str(root), "--sequences", "nope"], "no annotated sequence nope", 1),
        (["--run", str(tmp_path), "--out", str(tmp_path / "o")], "not a DAVIS root", 1),
        (["--run", str(root), "--init", "clicks:0"], "clicks:N", 1),
        ([str(tmp_path), str(tmp_path), "--run", str(root)], "either PRED_DIR GT_DIR, or --run", 2),  # usage
        ([str(tmp_path)], "give PRED_DIR and GT_DIR", 2),
    ]:
        assert main(["eval", *argv]) == code
        assert message in capsys.readouterr().err


def test_parse_init():
    assert parse_init("gt") == 0
    assert parse_init("clicks:5") == 5
    for bad in ["clicks", "clicks:-1", "clicks:x", "boxes:2"]:
        with pytest.raises(InputError):
            parse_init(bad)


def test_first_click_is_positive_at_the_centre_of_the_object():
    gt = np.zeros((40, 60), bool)
    gt[10:31, 20:41] = True  # 21x21 square centred at (30, 20)
    assert next_click(np.zeros_like(gt), gt) == Click(30, 20, 1)
    assert next_click(gt, gt) is None


def test_next_click_goes_to_the_largest_error_and_is_negative_for_extra_pixels():
    gt = np.zeros((50, 80), bool)
    gt[5:15, 5:15] = True
    pred = gt.copy()
    pred[20:45, 40:75] = True  # a large wrongly included region ...
    pred[5:8, 5:8] = False  # ... and a small missed corner
    click = next_click(pred, gt)
    assert click.label == 0 and 20 <= click.y < 45 and 40 <= click.x < 75
    assert gt[click.y, click.x] == 0
    pred[20:45, 40:75] = False
    assert next_click(pred, gt).label == 1


class _DiscSegmenter:
    """Stand-in segmenter: discs of radius 6 around positive clicks, minus discs around negative ones."""

    def __init__(self) -> None:
        self.calls: list[tuple[list, list]] = []

    def click(self, frame, points, labels):
        self.calls.append((list(points), list(labels)))
        yy, xx = np.mgrid[: frame.shape[0], : frame.shape[1]]
        mask = np.zeros(frame.shape[:2], bool)
        for (x, y), label in sorted(zip(points, labels), key=lambda c: -c[1]):
            disc = (xx - x) ** 2 + (yy - y) ** 2 <= 36
            mask = mask | disc if label else mask & ~disc
        return mask


def test_simulated_clicks_resend_every_click_and_improve_the_mask():
    frame = np.zeros((40, 60, 3), np.uint8)
    gt = np.zeros((40, 60), bool)
    gt[5:35, 5:20] = True  # a tall bar: one disc cannot cover it
    segmenter = _DiscSegmenter()
    mask, clicks = segment_with_clicks(segmenter, frame, gt, n_clicks=3)
    assert len(clicks) == 3 and all(c.label == 1 for c in clicks)
    calls = list(segmenter.calls)
    assert [len(points) for points, _ in calls] == [1, 2, 3]  # SAM-Track re-sends all clicks
    masks = [segmenter.click(frame, *call) for call in calls]
    ious = [np.sum(m & gt) / np.sum(m | gt) for m in masks]
    assert ious[0] < ious[1] < ious[2]
    np.testing.assert_array_equal(mask, masks[2])


def test_clicks_id_mask_segments_each_object_under_its_id():
    frame = np.zeros((40, 60, 3), np.uint8)
    gt = np.zeros((40, 60), np.uint8)
    gt[5:15, 5:15] = 1
    gt[20:30, 40:50] = 3
    ids = clicks_id_mask(_DiscSegmenter(), frame, gt, n_clicks=2)
    assert set(np.unique(ids)) == {0, 1, 3}
    assert ids[10, 10] == 1 and ids[25, 45] == 3
