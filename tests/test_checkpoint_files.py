"""Checkpoint files are checked before any model is built, and refused with one plain message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import DEAOT_FIXTURES

from samtrack import cli
from samtrack.errors import ModelError
from samtrack.models.weights import check_checkpoint_file, load_checkpoint_file


class _Payload:
    """Pickles to a call that would create a file if the loader ran it."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_a_checkpoint_with_code_is_refused_without_running_it(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": _Payload(tmp_path / "ran")}, path)
    check_checkpoint_file(path)  # a well-formed file: only loading it shows what it holds
    with pytest.raises(ModelError, match="evil.pth holds pickled Python objects besides weights") as info:
        load_checkpoint_file(path, "tracker")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("content", [b"", b"name: a yaml file\n", b"PK\x03\x04not a zip", b"\x89PNG\r\n\x1a\n"])
def test_files_that_are_no_checkpoint_are_refused_from_their_header(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="model.pth is not a PyTorch tracker checkpoint.*download it again"):
        check_checkpoint_file(path, "tracker")


def test_a_truncated_checkpoint_is_refused_from_its_header(tmp_path: Path) -> None:
    data = (DEAOT_FIXTURES / "deaott.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelError, match="cut.pth is not a PyTorch tracker checkpoint"):
        check_checkpoint_file(tmp_path / "cut.pth", "tracker")
    check_checkpoint_file(DEAOT_FIXTURES / "deaott.pth", "tracker")


def test_track_refuses_a_non_checkpoint_before_writing_anything(tmp_path: Path, capsys) -> None:
    frames = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "davis2016" / "JPEGImages" / \
        "480p" / "blackswan"
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights")
    out = tmp_path / "run"
    code = cli.main(["--quiet", "track", str(frames), "--out", str(out), "--box", "1,1,50,50",
                     "--tracker", "deaot-t", "--checkpoint", str(notes), "--segmenter", str(notes)])
    err = capsys.readouterr().err
    assert code == 1 and "notes.txt is not a PyTorch tracker checkpoint" in err
    assert "notes.txt is not a PyTorch segmenter checkpoint" in err
    assert err.count("\n") == 1 and "Error:" not in err and "weights_only" not in err
    assert not out.exists()


def test_audio_on_a_silent_video_says_so_before_asking_for_weights(blackswan_mp4: Path, tmp_path: Path,
                                                                   capsys) -> None:
    out = tmp_path / "run"
    code = cli.main(["--quiet", "track", str(blackswan_mp4), "--audio", "--out", str(out),
                     "--audio-model", str(tmp_path / "no-ast"), "--detector", str(tmp_path / "no-dino")])
    err = capsys.readouterr().err
    assert code == 1 and "blackswan.mp4 has no audio track" in err and "no-ast" not in err
    assert not out.exists()
