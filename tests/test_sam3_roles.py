"""SAM 3 in every role through the CLI: detector (text, discovery, automatic mode by categories),
segmenter (clicks, boxes), tracker (prompts, and `samtrack eval --run`), with tiny random SAM 3
checkpoints saved like a local copy of facebook/sam3 and real DAVIS frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DAVIS, DEAOT_FIXTURES
from PIL import Image

from samtrack import cli

DEAOT = ["--tracker", "deaot-t", "--checkpoint", str(DEAOT_FIXTURES / "deaott.pth")]
QUIET = ["--no-gif", "--no-video"]


@pytest.fixture(scope="module")
def clip(blackswan_small) -> Path:
    return blackswan_small[0]


def objects(out: Path) -> dict:
    return json.loads((out / "objects.json").read_text())


def test_text_with_the_sam3_detector_needs_no_segmenter(clip, tiny_sam3_video, tmp_path):
    """Masks come straight from SAM 3: a segmenter that does not exist is never looked for."""
    out = tmp_path / "run"
    code = cli.main(["-q", "track", str(clip), "--out", str(out), "--text", "swan. water", "--detector",
                     tiny_sam3_video, "--segmenter", str(tmp_path / "no-such-segmenter"), "--score-threshold", "0",
                     *DEAOT, *QUIET])
    assert code == 0
    found = objects(out)
    assert found and {o["label"] for o in found.values()} <= {"swan", "water"}
    assert all(o["prompt"]["kind"] == "text" and o["prompt"]["caption"] == "swan. water" for o in found.values())


def test_a_caption_sam3_finds_nothing_for_is_one_message_and_no_run(clip, tiny_sam3_video, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["-q", "track", str(clip), "--out", str(out), "--text", "swan", "--detector", tiny_sam3_video,
                     "--score-threshold", "1", *DEAOT, *QUIET])
    err = capsys.readouterr().err
    assert code == 1 and "'swan' found no object on frame 0" in err and "--score-threshold 1" in err
    assert not out.exists()  # nothing left behind: the same command with a lower threshold just runs


@pytest.mark.parametrize("mode", [["--discover", "swan"], ["--auto", "--text", "swan"]])
def test_key_frames_detect_categories_with_sam3(clip, tiny_sam3_video, tmp_path, mode):
    out = tmp_path / "run"
    prompts = []
    if mode[0] == "--discover":  # a small object given as a mask: segments outside it become new objects
        square = np.zeros((120, 213), np.uint8)
        square[50:60, 100:110] = 255
        Image.fromarray(square).save(tmp_path / "square.png")
        (tmp_path / "prompts.yaml").write_text("- {frame: 0, label: square, mask: square.png}\n")
        prompts = ["--prompts", str(tmp_path / "prompts.yaml")]
    code = cli.main(["-q", "track", str(clip), "--out", str(out), *mode, *prompts, "--sam-gap", "3",
                     "--detector", tiny_sam3_video, "--segmenter", str(tmp_path / "unused"), "--score-threshold", "0",
                     "--min-area", "1", *DEAOT, *QUIET])
    assert code == 0
    found = [o for o in objects(out).values() if o["prompt"]["kind"] == "text"]
    assert found and {o["label"] for o in found} == {"swan"}
    assert {o["added_on_frame"] for o in found} <= {0, 3}  # key frames only


def test_sam3_segmenter_and_tracker_from_one_checkpoint(clip, tiny_sam3_video, tmp_path):
    out = tmp_path / "run"
    code = cli.main(["-q", "track", str(clip), "--out", str(out), "--object", "swan", "--click", "100,60",
                     "--frame", "2", "--box", "20,20,120,100", "--segmenter", tiny_sam3_video,
                     "--tracker", "sam3", "--checkpoint", tiny_sam3_video, "--end", "4", *QUIET])
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["models"]["tracker"] == "sam3" and sorted(objects(out)) == ["1", "2"]
    assert len(list((out / "masks").glob("*.png"))) == 5


def test_eval_runs_the_sam3_tracker(tiny_sam3_video, tmp_path, capsys):
    code = cli.main(["eval", "--run", str(DAVIS), "--sequences", "blackswan", "--max-frames", "3", "--tracker",
                     "sam3", "--checkpoint", tiny_sam3_video, "--precision", "fp32", "--out", str(tmp_path / "e")])
    assert code == 0
    assert len(list((tmp_path / "e" / "blackswan").glob("*.png"))) == 3
    assert "J&F" in capsys.readouterr().out
