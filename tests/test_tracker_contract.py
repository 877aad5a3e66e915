"""The tracker contract (samtrack.models.tracker.Tracker), one test over every backend:
DeAOT (the DeAOT-T fixture checkpoint), SAM 2.1, EdgeTAM and SAM 3 (tiny random configs), on real frames."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEAOT_FIXTURES, davis_annotations, davis_frames
from PIL import Image
from test_eval_run import SEQUENCES, _small_davis
from test_sam2_video import save_tiny

from samtrack import cli
from samtrack.errors import InputError
from samtrack.models.tracker import Tracker
from samtrack.models.trackers import load_tracker

SIZE = (128, 72)
BACKENDS = ["deaot", "sam2", "edgetam", "sam3"]
NAMES = {"deaot": "deaot-t", "sam2": "sam2.1-tiny", "edgetam": "edgetam", "sam3": "sam3"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_sam3_video) -> dict[str, str]:
    root = tmp_path_factory.mktemp("contract")
    return {"deaot": str(DEAOT_FIXTURES / "deaott.pth"), "sam2": str(save_tiny("sam2", root / "sam2")),
            "edgetam": str(save_tiny("edgetam", root / "edgetam")), "sam3": tiny_sam3_video}


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB").resize(SIZE, Image.BILINEAR))
            for p in sorted(davis_frames("blackswan").glob("*.jpg"))[:4]]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    swan = np.asarray(Image.open(min(davis_annotations("blackswan").glob("*.png"))).resize(SIZE, Image.NEAREST))
    ids = np.zeros(swan.shape, np.uint8)
    ids[swan > 0] = 1
    ids[50:70, 5:35] = 2
    return ids


def tracker(backend: str, checkpoints: dict[str, str]) -> Tracker:
    return load_tracker(NAMES[backend], checkpoint=checkpoints[backend], precision="fp32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_tracker_contract(backend, checkpoints, frames, reference):
    trk = tracker(backend, checkpoints)
    assert isinstance(trk, Tracker)
    with pytest.raises(InputError):
        trk.track(frames[0])  # nothing referenced yet
    trk.add_reference(frames[0], reference)

    # track: uint8 ids, only referenced ones; memory untouched, so tracking the same frame again agrees
    ids, logits = trk.track(frames[1], return_logits=True)
    assert ids.dtype == np.uint8 and ids.shape == reference.shape
    assert set(np.unique(ids).tolist()) <= {0, 1, 2}
    assert logits.dtype == np.float32 and logits.shape[1:] == reference.shape and logits.shape[0] >= 3
    np.testing.assert_array_equal(logits.argmax(axis=0), ids)  # channel i is object i, 0 the background
    again, logits_again = trk.track(frames[1], return_logits=True)
    np.testing.assert_array_equal(again, ids)
    np.testing.assert_allclose(logits_again, logits, atol=1e-5)

    # update_memory only takes tracked ids
    unknown = ids.copy()
    unknown[:5, :5] = 7
    with pytest.raises(InputError):
        trk.update_memory(unknown)
    trk.update_memory(ids)

    # a key frame: tracked, corrected with a new object (id 5, ids need not be consecutive), referenced
    tracked = trk.track(frames[2])
    corrected = tracked.copy()
    corrected[5:25, 80:120] = 5
    trk.add_reference(frames[2], corrected)
    ids, logits = trk.track(frames[3], return_logits=True)
    assert logits.shape[0] >= 6 and np.ptp(logits[5]) > 0  # object 5 has real logits now
    assert set(np.unique(ids).tolist()) <= {0, 1, 2, 5}
    trk.update_memory(ids)

    with pytest.raises(InputError, match="frame size"):
        trk.track(frames[3][:-2])
    trk.reset()
    with pytest.raises(InputError):
        trk.track(frames[0])
    trk.add_reference(frames[0][:-8], reference[:-8])  # after reset a video of another size is fine
    assert trk.track(frames[1][:-8]).shape == reference[:-8].shape


def test_models_lists_sam2_and_edgetam_as_trackers(capsys):
    assert cli.main(["models", "--kind", "tracker"]) == 0
    listed = capsys.readouterr().out
    for name in ("r50-deaotl", "deaot-t", "sam2.1-tiny", "sam2.1-large", "edgetam", "sam3"):
        assert f"\n{name}" in listed or listed.startswith(name) or f"{name} " in listed


@pytest.mark.parametrize("backend", ["sam2", "edgetam"])
def test_eval_run_works_with_sam2_and_edgetam(backend, checkpoints, tmp_path, capsys):
    root = _small_davis(tmp_path / "davis", n_frames=3)
    name = "sam2.1-tiny" if backend == "sam2" else "edgetam"
    code = cli.main(["--quiet", "eval", "--run", str(root), "--sequences", SEQUENCES[0], "--tracker", name,
                     "--checkpoint", checkpoints[backend], "--out", str(tmp_path / "pred")])
    assert code == 0, capsys.readouterr().err
    assert f"{name}: propagated 2 frames of 1 sequences" in capsys.readouterr().out
    assert len(list((tmp_path / "pred" / SEQUENCES[0]).glob("*.png"))) == 3
