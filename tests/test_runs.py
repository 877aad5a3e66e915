"""Run directories a user can trust: resume, the --out lock, validation before writing, messages.

Each test drives `samtrack track` as a user does (in-process, or as two processes), on a quarter-size
blackswan clip with the DeAOT-T fixture checkpoint; mask prompts need no segmenter weights.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEAOT_FIXTURES, davis_annotations, davis_frames
from PIL import Image

from samtrack import cli
from samtrack.io.rundir import LOCK_FILE, RunLock

N = 12
SCALE = 4


def _small(seq: str, out: Path) -> Path:
    out.mkdir()
    for path in sorted(davis_frames(seq).glob("*.jpg"))[:N]:
        im = Image.open(path)
        im.resize((im.width // SCALE, im.height // SCALE), Image.BILINEAR).save(out / path.name, quality=95)
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return _small("blackswan", tmp_path_factory.mktemp("clips") / "blackswan")


@pytest.fixture(scope="module")
def other_clip(tmp_path_factory) -> Path:
    """Another sequence with as many frames of the same size."""
    return _small("camel", tmp_path_factory.mktemp("clips") / "camel")


def swan(i: int) -> np.ndarray:
    im = Image.open(davis_annotations("blackswan") / f"{i:05d}.png")
    return np.array(im.resize((im.width // SCALE, im.height // SCALE), Image.NEAREST)) > 0


def prompts_file(folder: Path, entries: list[dict], name: str = "prompts.yaml") -> Path:
    """A prompts file; an entry's `mask` given as an array is saved beside it as a PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for n, entry in enumerate(entries):
        entry = dict(entry)
        if isinstance(entry.get("mask"), np.ndarray):
            png = f"{Path(name).stem}_{n}.png"
            Image.fromarray(entry["mask"].astype(np.uint8) * 255).save(folder / png)
            entry["mask"] = png
        lines.append(json.dumps(entry))
    (folder / name).write_text("[" + ",\n ".join(lines) + "]\n")
    return folder / name


@pytest.fixture()
def swan_prompts(tmp_path) -> Path:
    return prompts_file(tmp_path / "p", [{"frame": 0, "label": "swan", "mask": swan(0)}])


def track(clip: Path, out: Path, *extra: str, prompts: Path | None = None) -> list[str]:
    args = ["--quiet", "track", str(clip), "--out", str(out), "--tracker", "deaot-t",
            "--checkpoint", str(DEAOT_FIXTURES / "deaott.pth"), "--no-gif", "--no-video", *extra]
    return args + (["--prompts", str(prompts)] if prompts else [])


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def masks(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "masks").glob("*.png"))}


class DiskFull:
    """Makes mask PNGs after the first `after` fail as on a full disk: part of the file written, then ENOSPC."""

    def __init__(self, monkeypatch, after: int) -> None:
        self.calls, self.after = 0, after
        self.real = real = Image.Image.save

        def save(image, fp, *args, **kwargs):
            if str(fp).endswith(".tmp") and ".png." in str(fp):
                self.calls += 1
                if self.calls > self.after:
                    Path(fp).write_bytes(b"\x89PNG partial")
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fp))
            return real(image, fp, *args, **kwargs)

        monkeypatch.setattr(Image.Image, "save", save)


def temps(out: Path) -> list[Path]:
    return list(out.rglob(".*.tmp"))


# --------------------------------------------------------------------------- 1, 9: --end and resume

def test_a_finished_end_run_resumed_does_nothing_and_covers_only_its_frames(clip, swan_prompts, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(track(clip, out, "--end", "5", prompts=swan_prompts), capsys)[0] == 0
    assert sorted(masks(out)) == [f"{i:05d}.png" for i in range(6)]  # no empty masks past --end
    record = json.loads((out / "run.json").read_text())
    assert record["frames"]["covered"] == [[0, 5]]
    before = masks(out), (out / "run.json").read_text()
    code, said = run_cli(track(clip, out, "--end", "5", "--resume", prompts=swan_prompts), capsys)
    assert code == 0 and "nothing to do" in said and "frames 0-5" in said
    assert (masks(out), (out / "run.json").read_text()) == before


def test_a_failed_end_run_resumes_to_its_end_only(clip, swan_prompts, tmp_path, capsys, monkeypatch):
    whole = tmp_path / "whole"
    assert run_cli(track(clip, whole, "--end", "7", prompts=swan_prompts), capsys)[0] == 0
    out = tmp_path / "run"
    full = DiskFull(monkeypatch, after=4)
    code, said = run_cli(track(clip, out, "--end", "7", prompts=swan_prompts), capsys)
    assert code == 1 and said.count("\n") == 1
    assert f"{out / 'masks'}" in said and "the disk is full" in said
    saved = len(masks(out))
    assert saved >= 2 and f"frames 0-{saved - 1} of 0-7 are saved in {out}" in said and "--resume" in said
    assert temps(out) == []
    monkeypatch.setattr(Image.Image, "save", full.real)  # space freed
    assert run_cli(track(clip, out, "--end", "7", "--resume", prompts=swan_prompts), capsys)[0] == 0
    assert masks(out) == masks(whole)
    assert len(masks(out)) == 8


# ------------------------------------------------------------------------------------- 2: the lock

def test_a_second_writer_is_refused_at_once_and_writes_nothing(clip, swan_prompts, tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock.open(out):  # another session of this process holds the directory
        code, said = run_cli(track(clip, out, prompts=swan_prompts), capsys)
        assert code == 1 and f"{out} is in use by another samtrack run (pid {os.getpid()}" in said
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    assert run_cli(track(clip, out, "--end", "2", prompts=swan_prompts), capsys)[0] == 0


def test_two_processes_on_one_directory_leave_one_consistent_run(clip, swan_prompts, tmp_path):
    out = tmp_path / "run"
    other = prompts_file(tmp_path / "q", [{"frame": 0, "label": "left", "mask": swan(0) & (np.arange(213) < 100)}])
    procs = [subprocess.Popen([sys.executable, "-m", "samtrack", *track(clip, out, prompts=p)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in (swan_prompts, other)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "is in use by another samtrack run" in refused or "already holds a run" in refused
    objects = json.loads((out / "objects.json").read_text())
    session = json.loads((out / "session.json").read_text())
    assert [o["label"] for o in objects.values()] == [o["label"] for o in session["objects"].values()]
    winner = objects["1"]["label"]
    first = np.array(Image.open(out / "masks" / "00000.png")) == 1
    assert np.array_equal(first, swan(0) if winner == "swan" else swan(0) & (np.arange(213) < 100))


# ------------------------------------------------------------------- 4: another input, other settings

def test_resume_refuses_another_input_and_unasked_changes(clip, other_clip, swan_prompts, tmp_path, capsys,
                                                          monkeypatch):
    out = tmp_path / "run"
    full = DiskFull(monkeypatch, after=3)
    assert run_cli(track(clip, out, prompts=swan_prompts), capsys)[0] == 1
    monkeypatch.setattr(Image.Image, "save", full.real)
    saved = masks(out)

    code, said = run_cli(track(other_clip, out, "--resume", prompts=swan_prompts), capsys)
    assert code == 1 and f"{other_clip} is not the input of the run in {out}" in said and "bytes" in said
    code, said = run_cli(track(clip, out, "--resume", "--long-term-mem-gap", "3", prompts=swan_prompts), capsys)
    assert code == 1 and "--long-term-mem-gap: 9999 then, 3 now" in said and "--allow-changes" in said
    moved = prompts_file(tmp_path / "p2", [{"frame": 0, "label": "swan", "mask": swan(1)}])
    code, said = run_cli(track(clip, out, "--resume", prompts=moved), capsys)
    assert code == 1 and "prompts on frame 0 differ" in said
    late = prompts_file(tmp_path / "p3", [{"frame": 0, "label": "swan", "mask": swan(0)},
                                          {"frame": 10, "label": "tail", "mask": swan(10) & ~swan(9)}])
    code, said = run_cli(track(clip, out, "--resume", prompts=late), capsys)
    assert code == 1 and "prompts on frame 10 differ" in said
    assert masks(out) == saved  # every refusal left the run as it was

    code, said = run_cli(track(clip, out, "--resume", "--allow-changes", "--long-term-mem-gap", "3",
                               prompts=late), capsys)
    assert code == 0, said
    session = json.loads((out / "session.json").read_text())
    assert session["settings"]["tracker"]["long_term_mem_gap"] == 3
    assert {o["label"] for o in session["objects"].values()} == {"swan", "tail"}
    code, said = run_cli(track(clip, out, "--resume", "--allow-changes", prompts=moved), capsys)
    assert code == 1 and "frame 0 is already tracked" in said


# ---------------------------------------------------------------------- 5: a directory that is no run

def test_a_directory_that_is_no_track_run_needs_force(clip, swan_prompts, tmp_path, capsys):
    rendered = tmp_path / "rendered"
    gt = tmp_path / "gt"
    gt.mkdir()
    for i in range(N):
        Image.fromarray(swan(i).astype(np.uint8) * 255).save(gt / f"{i:05d}.png")
    assert run_cli(["--quiet", "render", str(clip), str(gt), "--out", str(rendered), "--no-gif", "--no-video"],
                   capsys)[0] == 0
    before = masks(rendered)
    code, said = run_cli(track(clip, rendered, "--end", "3", prompts=swan_prompts), capsys)
    assert code == 1 and f"{rendered} is not empty and holds no samtrack track run" in said and "--force" in said
    assert masks(rendered) == before
    assert run_cli(track(clip, rendered, "--end", "3", "--force", prompts=swan_prompts), capsys)[0] == 0
    assert sorted(masks(rendered)) == [f"{i:05d}.png" for i in range(4)]
    rle = json.loads((rendered / "masks_rle.json").read_text())  # no stale render masks past --end
    assert rle["covered"] == [[0, 3]] and {f["frame"] for o in rle["objects"] for f in o["frames"]} <= {0, 1, 2, 3}


# --------------------------------------------- 6, 7: validation before anything is written or loaded

@pytest.mark.parametrize("entries, extra, says", [
    ([{"frame": 0, "mask": "SWAN"}, {"frame": 9, "mask": "SWAN"}], ["--end", "5"],
     r"the prompt on frame 9 is after the last frame to track \(--end 5\)"),
    ([{"frame": 0, "points": [[500, 10]], "labels": [1]}], [], r"click \(500, 10\).*outside the 213x120 frame"),
    ([{"frame": 0, "box": [10, 10, 10, 40]}], [], "box .* has no area"),
    ([{"frame": 0, "mask": "SMALL"}], [], "mask .* is 20x10, the frame is 213x120"),
    ([{"frame": 0, "mask": "SWAN"}, {"frame": 0, "mask": "SWAN"}], ["--max-obj-num", "1"],
     "2 objects .* max_obj_num is 1"),
    ([{"frame": 12, "mask": "SWAN"}], [], r"frame 12 is outside the video \(frames 0\.\.11\)"),
])
def test_bad_prompts_are_refused_before_anything_is_written(clip, tmp_path, capsys, entries, extra, says):
    arrays = {"SWAN": swan(0), "SMALL": np.ones((10, 20), bool)}
    entries = [{**e, "mask": arrays[e["mask"]]} if "mask" in e else e for e in entries]
    bad = prompts_file(tmp_path / "p", entries)
    out = tmp_path / "run"
    # No segmenter weights exist: the prompts are checked before any model is looked for or loaded.
    code, said = run_cli(track(clip, out, "--segmenter", str(tmp_path / "no-sam"), *extra, prompts=bad), capsys)
    assert code == 2 and said.count("\n") == 1, said  # a usage error
    assert re.search(says, said), said
    assert not out.exists()
    fixed = prompts_file(tmp_path / "fixed", [{"frame": 0, "mask": swan(0)}])
    assert run_cli(track(clip, out, "--end", "2", prompts=fixed), capsys)[0] == 0


# ------------------------------------------------------------------------------------- 8: messages

def test_out_that_is_a_file_is_named(clip, swan_prompts, tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    code, said = run_cli(track(clip, file, prompts=swan_prompts), capsys)
    assert code == 1 and f"the output directory {file} is an existing file, not a directory" in said
    assert file.read_text() == "mine"


@pytest.mark.parametrize("text, says", [
    ("- frame: abc\n  box: [1, 2, 30, 40]\n", r"prompts\.yaml, prompt 1: frame must be a whole number, got 'abc'"),
    ("- frame: 0\n  box: [1, 2, 30, 40\n- frame: 1\n", r"prompts\.yaml is not valid YAML or JSON: .*line 3"),
    ("- frame: -2\n  box: [1, 2, 30, 40]\n", r"prompts\.yaml, prompt 1: frame must be 0 or more, got -2"),
])
def test_prompt_file_mistakes_name_the_file_and_the_prompt(clip, tmp_path, capsys, text, says):
    (tmp_path / "prompts.yaml").write_text(text)
    code, said = run_cli(track(clip, tmp_path / "run", prompts=tmp_path / "prompts.yaml"), capsys)
    assert code == 2 and said.count("\n") == 1, said
    assert re.search(says, said), said
    assert "Error" not in said and not (tmp_path / "run").exists()


def test_render_is_refused_while_a_run_writes_its_directory(clip, tmp_path, capsys):
    gt = tmp_path / "gt"
    gt.mkdir()
    for i in range(N):
        Image.fromarray(swan(i).astype(np.uint8) * 255).save(gt / f"{i:05d}.png")
    out = tmp_path / "run"
    with RunLock.open(out):
        code, said = run_cli(["--quiet", "render", str(clip), str(gt), "--out", str(out), "--no-gif",
                              "--no-video"], capsys)
    assert code == 1 and "is in use by another samtrack run" in said
    assert sorted(p.name for p in out.iterdir()) == []


def test_a_checkpoint_of_another_model_leaves_no_half_made_run(clip, swan_prompts, tmp_path, capsys):
    out = tmp_path / "run"
    args = track(clip, out, "--end", "2", prompts=swan_prompts)
    wrong = args.index(str(DEAOT_FIXTURES / "deaott.pth"))
    args[wrong] = str(DEAOT_FIXTURES / "r50_deaotl.pth")
    code, said = run_cli(args, capsys)
    assert code == 1 and "r50_deaotl.pth is not a deaot-t checkpoint: it looks like r50-deaotl" in said
    assert not out.exists()
    assert run_cli(track(clip, out, "--end", "2", prompts=swan_prompts), capsys)[0] == 0


class _Still:
    """Tracker double: objects stay where they were referenced."""

    def reset(self):
        self.ids = None

    def add_reference(self, frame, ids):
        self.ids = ids.copy()

    def track(self, frame, **kwargs):
        return self.ids.copy()

    def update_memory(self, ids):
        self.ids = ids.copy()


class _OneSegment:
    """Segmenter double: segment-everything finds one fixed segment."""

    def everything(self, frame, **kwargs):
        segments = np.zeros(frame.shape[:2], np.uint8)
        segments[10:40, 20:60] = 1
        return segments


def test_a_finished_auto_run_resumed_does_nothing(clip, tmp_path):
    from samtrack.tracking.session import Session
    from samtrack.tracking.settings import Settings

    out, settings = tmp_path / "run", Settings(sam_gap=5, min_area=20)
    with Session(clip, out, settings, segmenter=_OneSegment(), tracker=_Still()) as s:
        s.propagate(0, 6, discover=True)
        s.finalize(video=False, gif=False, progress=False)
    before = masks(out)
    assert sorted(before) == [f"{i:05d}.png" for i in range(7)]
    with Session(clip, out, settings, resume=True, segmenter=_OneSegment(), tracker=_Still()) as s:
        assert s.finalized
        assert s.resumable
        s.propagate(None)  # as `track --auto --resume` continues: up to the run's end (6), so nothing to do
        assert s.finalized
    assert masks(out) == before
