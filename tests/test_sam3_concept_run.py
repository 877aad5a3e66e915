"""`samtrack track --auto --text CATEGORIES --tracker sam3`: SAM 3's own detect-and-track on every frame,
as a run (tiny random SAM 3; what its detector sees and its tracker follows is scripted through
`sam3_scene.Scene`, as in test_sam3_concept.py, SAM 3's association, hotstart and NMS run as they are)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sam3_scene import Blob, Scene

from samtrack import cli
from samtrack.models import trackers
from samtrack.models.sam3 import load_sam3

SIZE = (90, 120)
SWAN, DUCK = Blob("swan-1", "swan", (2, 2, 12, 12)), Blob("duck-1", "duck", (18, 18, 30, 30))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tiny_sam3_video):
    return load_sam3(tiny_sam3_video, "concept", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)).save(out / f"{i:05d}.png")
    return out


def scripted(weights, monkeypatch, frames) -> Scene:
    """The scene on the concept weights the run loads (the product's loader hands back these)."""
    scene = Scene(weights.model, weights.processor, frames).install(monkeypatch)
    monkeypatch.setattr(trackers, "load_concept_weights", lambda *args: weights)
    return scene


def track(clip: Path, out: Path, tiny: str, *extra: str) -> int:
    return cli.main(["-q", "track", str(clip), "--out", str(out), "--auto", "--tracker", tiny,
                     "--detector", str(out.parent / "no-detector"), "--segmenter", str(out.parent / "no-segmenter"),
                     "--precision", "fp32", "--no-video", "--no-gif", *extra])


def objects(out: Path) -> dict:
    return json.loads((out / "objects.json").read_text())


def ids(out: Path, i: int) -> list[int]:
    mask = np.array(Image.open(out / "masks" / f"{i:05d}.png"))
    return sorted(int(v) for v in np.unique(mask) if v)


def test_two_categories_and_one_appearing_mid_video(clip, tmp_path, weights, tiny_sam3_video, monkeypatch):
    late = Blob("duck-2", "duck", (2, 20, 10, 30))
    scripted(weights, monkeypatch, lambda i: [SWAN, DUCK] + ([late] if i >= 5 else []))
    out = tmp_path / "run"
    assert track(clip, out, tiny_sam3_video, "--text", "swan. duck") == 0  # no detector, no segmenter loaded
    found = objects(out)
    assert [(o["label"], o["prompt"]["kind"], o["added_on_frame"]) for o in found.values()] == \
        [("swan", "concept", 0), ("duck", "concept", 0), ("duck", "concept", 5)]
    assert [ids(out, i) for i in (0, 4, 5, 19)] == [[1, 2], [1, 2], [1, 2, 3], [1, 2, 3]]  # stable ids
    run = json.loads((out / "run.json").read_text())
    assert run["frames"]["covered"] == [[0, 19]] and run["models"]["tracker"] == tiny_sam3_video
    assert (run["models"]["tracker_mode"], run["models"]["tracker_model_type"]) == ("concept", "sam3_video")
    assert run["models"]["precision"] == {"concept": "fp32"}


def test_two_detections_of_one_object_become_one_id(clip, tmp_path, weights, tiny_sam3_video, monkeypatch):
    copy = Blob("swan-1-copy", "swan", (4, 4, 14, 14), score=0.85)
    scripted(weights, monkeypatch, lambda i: [SWAN, copy])
    out = tmp_path / "run"
    assert track(clip, out, tiny_sam3_video, "--text", "swan", "--end", "5") == 0
    assert list(objects(out)) == ["1"] and ids(out, 5) == [1]


def test_ids_stay_within_max_obj_num_while_sam3_keeps_finding(clip, tmp_path, weights, tiny_sam3_video,
                                                             monkeypatch):
    cells = [(4 * (k // 8), 4 * (k % 8)) for k in range(30)]
    scripted(weights, monkeypatch, lambda i: [Blob(f"{i}-{k}", "swan", (y, x, y + 3, x + 3))
                                              for k, (y, x) in enumerate(cells)])
    out = tmp_path / "run"
    assert track(clip, out, tiny_sam3_video, "--text", "swan", "--end", "7", "--max-obj-num", "40") == 0
    assert sorted(map(int, objects(out))) == list(range(1, 41))  # SAM 3 is told to keep at most 40
    assert all(max(ids(out, i), default=0) <= 40 for i in range(8))


def test_an_interrupted_concept_run_resumes_with_its_ids(clip, tmp_path, weights, tiny_sam3_video, monkeypatch):
    from samtrack.tracking.session import Session

    scripted(weights, monkeypatch, lambda i: [SWAN, DUCK])
    out = tmp_path / "run"
    real = Session.propagate

    def ctrl_c_after_8(self, *args, progress=None, **kw):
        def stop(done, total, info):
            if done >= 8:
                raise KeyboardInterrupt
        return real(self, *args, progress=stop, **kw)

    monkeypatch.setattr(Session, "propagate", ctrl_c_after_8)
    assert track(clip, out, tiny_sam3_video, "--text", "swan. duck") == 130
    saved = sorted(p.name for p in (out / "masks").glob("*.png"))
    assert 8 <= len(saved) < 20
    monkeypatch.setattr(Session, "propagate", real)
    assert track(clip, out, tiny_sam3_video, "--text", "swan. duck", "--resume") == 0
    assert list(objects(out)) == ["1", "2"]  # the resumed pass found the same two objects again
    assert all(ids(out, i) == [1, 2] for i in range(20))


def test_a_caption_sam3_finds_nothing_for_is_one_message_and_no_run(clip, tmp_path, tiny_sam3_video, capsys):
    out = tmp_path / "run"
    assert track(clip, out, tiny_sam3_video, "--text", "zebra", "--end", "3") == 1
    assert "'zebra' was found on no frame" in capsys.readouterr().err
    assert not out.exists()
