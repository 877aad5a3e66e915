"""`--resume` of a finished `--backward` run does nothing, and refuses changed prompts unless
`--allow-changes` (the run records its backward passes and keeps its forward pass after them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_runs import _small, masks, prompts_file, run_cli, swan, track


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return _small("blackswan", tmp_path_factory.mktemp("clips") / "blackswan")


def backward_prompts(folder: Path, head_frame: int = 5) -> Path:
    """The swan on frame 0 and, added on a later frame, its head (the part left of x=110)."""
    head = swan(head_frame) & (np.arange(213) < 110)
    return prompts_file(folder, [{"frame": 0, "label": "swan", "mask": swan(0)},
                                 {"frame": head_frame, "label": "head", "mask": head}])


def objects(out: Path) -> list[str]:
    return [o["label"] for o in json.loads((out / "session.json").read_text())["objects"].values()]


def test_resuming_a_finished_backward_run_does_nothing(clip, tmp_path, capsys):
    out, prompts = tmp_path / "run", backward_prompts(tmp_path / "p")
    assert run_cli(track(clip, out, "--end", "8", "--backward", prompts=prompts), capsys)[0] == 0
    assert objects(out) == ["swan", "head"]
    before = masks(out), (out / "run.json").read_text()
    for _ in range(2):
        code, said = run_cli(track(clip, out, "--end", "8", "--backward", "--resume", prompts=prompts), capsys)
        assert code == 0 and "nothing to do" in said, said
        assert objects(out) == ["swan", "head"]  # not swan, head, swan, head (ids 1-4)
        assert (masks(out), (out / "run.json").read_text()) == before


def test_resuming_a_finished_backward_run_refuses_changed_prompts(clip, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(track(clip, out, "--end", "8", "--backward", prompts=backward_prompts(tmp_path / "p")),
                   capsys)[0] == 0
    before = masks(out)
    changed = backward_prompts(tmp_path / "q", head_frame=6)
    code, said = run_cli(track(clip, out, "--end", "8", "--backward", "--resume", prompts=changed), capsys)
    assert code == 1 and "prompts on frame" in said and "differ" in said, said
    assert masks(out) == before and objects(out) == ["swan", "head"]
