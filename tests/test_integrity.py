"""Issue 24: nothing outside `--out` is touched, render keeps to its own runs, names of any valid length,
a full disk while writing the outputs, input identity by content, prompts that cannot make an object.

Each test drives `samtrack track` / `render` as a user does, on the quarter-size blackswan clip of
test_runs with the DeAOT-T fixture checkpoint (mask prompts need no segmenter weights).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA
from PIL import Image
from test_runs import DiskFull, N, _small, masks, prompts_file, run_cli, swan, temps, track

from samtrack.errors import InputError
from samtrack.io.masks import load_id_mask
from samtrack.io.rundir import LOCK_FILE, input_differences, input_identity
from samtrack.io.sources import open_source
from samtrack.io.video import GifWriter, Mp4Writer


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return _small("blackswan", tmp_path_factory.mktemp("clips") / "blackswan")


@pytest.fixture(scope="module")
def other_clip(tmp_path_factory) -> Path:
    """Another sequence with as many frames of the same size."""
    return _small("camel", tmp_path_factory.mktemp("clips") / "camel")


@pytest.fixture()
def swan_prompts(tmp_path) -> Path:
    return prompts_file(tmp_path / "p", [{"frame": 0, "label": "swan", "mask": swan(0)}])


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links as their target's path) by relative name."""
    return {str(p.relative_to(folder)): (f"-> {os.readlink(p)}".encode() if p.is_symlink() else p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


def gt_masks(folder: Path, shift: int = 0) -> Path:
    """0/255 swan masks for the clip's frames (moved right by `shift` pixels)."""
    folder.mkdir()
    for i in range(N):
        Image.fromarray(np.roll(swan(i), shift, axis=1).astype(np.uint8) * 255).save(folder / f"{i:05d}.png")
    return folder


def render(frames: Path, masks_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["render", str(frames), str(masks_dir), "--out", str(out), "--no-gif", "--no-video", *extra]


# ------------------------------------------------------------------ 1: nothing outside --out, ever

def test_force_never_follows_a_linked_masks_folder_out_of_the_run(clip, swan_prompts, tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    for i in range(4):
        (victim / f"{i:05d}.png").write_bytes(b"not yours %d" % i)
    (victim / ".notes.tmp").write_bytes(b"not yours either")
    out = tmp_path / "forced"
    out.mkdir()
    (out / "masks").symlink_to(victim)
    before = tree(victim)
    code, said = run_cli(track(clip, out, "--end", "2", "--force", prompts=swan_prompts), capsys)
    assert code == 1 and said.count("\n") == 1, said
    assert f"{out / 'masks'} is a link to {victim}" in said and "never through a link" in said
    assert tree(victim) == before
    assert (out / "masks").is_symlink()  # the user's link stays, for them to remove


def test_links_in_place_of_samtrack_files_are_replaced_never_written_through(clip, swan_prompts, tmp_path,
                                                                              capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("objects.json", "run.json", "masks.zip", "00001.png", "00009.png", "lock"):
        (victim / name).write_bytes(b"not yours: " + name.encode())
    before = tree(victim)
    out = tmp_path / "forced"
    (out / "masks").mkdir(parents=True)
    for name in ("objects.json", "run.json", "masks.zip"):
        (out / name).symlink_to(victim / name)
    for name in ("00001.png", "00009.png"):  # one the run writes, one --force removes
        (out / "masks" / name).symlink_to(victim / name)
    (out / LOCK_FILE).symlink_to(victim / "lock")
    code, said = run_cli(track(clip, out, "--end", "2", "--force", prompts=swan_prompts), capsys)
    assert code == 1 and f"{out / LOCK_FILE} is a link" in said, said
    assert tree(victim) == before
    (out / LOCK_FILE).unlink()
    code, said = run_cli(track(clip, out, "--end", "2", "--force", prompts=swan_prompts), capsys)
    assert code == 0, said
    assert tree(victim) == before
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert sorted(masks(out)) == ["00000.png", "00001.png", "00002.png"]
    assert json.loads((out / "objects.json").read_text())["1"]["label"] == "swan"


# ---------------------------------------------------------- 3: render keeps to the runs it made itself

def test_render_refuses_a_track_run_unless_forced(clip, swan_prompts, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(track(clip, out, "--end", "3", prompts=swan_prompts), capsys)[0] == 0
    before = tree(out)
    gt = gt_masks(tmp_path / "gt", shift=30)
    code, said = run_cli(["--quiet", *render(clip, gt, out)], capsys)
    assert code == 1 and said.count("\n") == 1, said
    assert f"{out} holds a samtrack track run" in said and "--force" in said
    assert tree(out) == before
    assert run_cli(["--quiet", *render(clip, gt, out, "--force")], capsys)[0] == 0
    assert not (out / "session.json").exists()
    assert sorted(masks(out)) == [f"{i:05d}.png" for i in range(N)]
    assert all(np.array_equal(load_id_mask(out / "masks" / f"{i:05d}.png"), load_id_mask(gt / f"{i:05d}.png"))
               for i in range(N))  # nothing of the track run's masks is kept
    code, said = run_cli(track(clip, out, "--end", "3", "--resume", prompts=swan_prompts), capsys)
    assert code == 1 and "holds no samtrack track run" in said  # no finished run is claimed


def test_render_refuses_a_render_of_other_frames_unless_forced(clip, other_clip, tmp_path, capsys):
    gt, out = gt_masks(tmp_path / "gt"), tmp_path / "rendered"
    assert run_cli(["--quiet", *render(clip, gt, out)], capsys)[0] == 0
    before = tree(out)
    code, said = run_cli(["--quiet", *render(other_clip, gt, out)], capsys)
    assert code == 1 and said.count("\n") == 1, said
    assert f"{out} holds a render of other frames" in said and "--force" in said
    assert tree(out) == before
    assert run_cli(["--quiet", *render(other_clip, gt, out, "--force")], capsys)[0] == 0


def test_render_reuses_only_masks_it_wrote_itself_by_content(clip, tmp_path, capsys):
    gt, out = gt_masks(tmp_path / "gt"), tmp_path / "rendered"
    assert run_cli(render(clip, gt, out), capsys)[0] == 0
    changed = out / "masks" / "00004.png"
    Image.fromarray(np.zeros((120, 213), np.uint8)).save(changed)  # newer than its source, other content
    code, said = run_cli(render(clip, gt, out), capsys)
    assert code == 0 and "masks written 1, reused 11" in said, said
    assert np.array_equal(load_id_mask(changed), load_id_mask(gt / "00004.png"))


def test_render_refuses_samtrack_outputs_it_did_not_write(clip, tmp_path, capsys):
    gt, out = gt_masks(tmp_path / "gt"), tmp_path / "rendered"
    (out / "masks").mkdir(parents=True)
    Image.fromarray(np.ones((120, 213), np.uint8)).save(out / "masks" / "00000.png")
    (out / "notes.txt").write_text("mine")
    code, said = run_cli(["--quiet", *render(clip, gt, out)], capsys)
    assert code == 1 and f"{out} holds samtrack outputs this render did not write (masks/)" in said, said
    assert run_cli(["--quiet", *render(clip, gt, out, "--force")], capsys)[0] == 0
    assert (out / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------- 5, 11: names of any valid length

def long_named_clip(frames: Path, folder: Path, stem: int) -> Path:
    folder.mkdir()
    for i in range(4):
        shutil.copy(frames / f"{i:05d}.jpg", folder / ("f" * (stem - 3) + f"{i:03d}.jpg"))
    return folder


def test_frames_with_long_valid_names_are_tracked(clip, tmp_path, capsys):
    frames = long_named_clip(clip, tmp_path / "long", stem=240)
    prompts = prompts_file(tmp_path / "p", [{"frame": 0, "mask": swan(0)}])
    out = tmp_path / "run"
    code, said = run_cli(track(frames, out, prompts=prompts), capsys)
    assert code == 0, said
    assert sorted(masks(out)) == ["f" * 237 + f"{i:03d}.png" for i in range(4)] and temps(out) == []


def test_a_mask_name_the_output_disk_cannot_hold_is_refused_before_writing(clip, tmp_path, capsys, monkeypatch):
    frames = long_named_clip(clip, tmp_path / "long", stem=120)
    prompts = prompts_file(tmp_path / "p", [{"frame": 0, "mask": swan(0)}])
    real = os.pathconf
    monkeypatch.setattr(os, "pathconf", lambda p, name: 100 if name == "PC_NAME_MAX" else real(p, name))
    out = tmp_path / "run"
    code, said = run_cli(track(frames, out, prompts=prompts), capsys)
    assert code == 1 and said.count("\n") == 1, said
    assert ("the mask file name " + "f" * 117 + "000.png is 124 bytes long, more than the 100 the file system of "
            f"{out} allows") in said
    assert not out.exists()


def test_an_out_name_too_long_is_one_clear_message(clip, swan_prompts, tmp_path, capsys):
    out = tmp_path / ("o" * 300)
    code, said = run_cli(track(clip, out, prompts=swan_prompts), capsys)
    assert code == 1 and said.count("\n") == 1, said
    assert "name is too long for the file system" in said and "Errno" not in said and "OSError" not in said


# --------------------------------------------------------------- 6: a full disk writing the outputs

class FullWhileEncoding:
    """The disk fills while overlay.mp4 is encoded: its writes fail, and closing a container then fails too
    (FFmpeg writes the trailer), as on a real full disk."""

    def __init__(self, monkeypatch, after: int = 2) -> None:
        self.writes = 0

        def enospc(path: Path) -> OSError:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        real_write = Mp4Writer.write

        def write(writer, frame):
            self.writes += 1
            if self.writes > after:
                raise enospc(writer._tmp)
            real_write(writer, frame)

        monkeypatch.setattr(Mp4Writer, "write", write)
        for cls in (Mp4Writer, GifWriter):
            real_release = cls._release

            def release(writer, real=real_release):
                real(writer)
                raise enospc(writer._tmp)

            monkeypatch.setattr(cls, "_release", release)


def test_a_full_disk_while_writing_outputs_says_what_is_saved_and_leaves_no_temp(clip, swan_prompts, tmp_path,
                                                                                 capsys, monkeypatch):
    out = tmp_path / "run"
    args = track(clip, out, "--end", "5", prompts=swan_prompts)
    args = [a for a in args if a not in ("--no-gif", "--no-video")]
    full = FullWhileEncoding(monkeypatch)
    code, said = run_cli(args, capsys)
    assert full.writes > 2
    assert code == 1 and said.count("\n") == 1, said
    assert f"cannot write {out / 'overlay.mp4'}: the disk is full" in said
    assert f"the masks of frames 0-5 are saved in {out / 'masks'}" in said and "--resume" in said
    assert "Errno" not in said and temps(out) == []
    monkeypatch.undo()  # space freed
    saved = masks(out)
    code, said = run_cli([*args, "--resume"], capsys)
    assert code == 0, said
    assert masks(out) == saved and (out / "overlay.mp4").is_file() and (out / "overlay.gif").is_file()
    assert temps(out) == []


def test_render_on_a_full_disk_says_the_same_command_finishes_it(clip, tmp_path, capsys, monkeypatch):
    gt, out = gt_masks(tmp_path / "gt"), tmp_path / "rendered"
    args = ["--quiet", "render", str(clip), str(gt), "--out", str(out)]
    FullWhileEncoding(monkeypatch)
    code, said = run_cli(args, capsys)
    assert code == 1 and said.count("\n") == 1, said
    assert f"cannot write {out / 'overlay.mp4'}: the disk is full" in said
    assert f"the masks are saved in {out / 'masks'}" in said and "run the same command again" in said
    assert temps(out) == []
    monkeypatch.undo()
    assert run_cli(args, capsys)[0] == 0 and (out / "overlay.mp4").is_file()


# --------------------------------------------------------------------- 7: the input, by its content

def test_resume_refuses_an_input_with_swapped_frames(clip, swan_prompts, tmp_path, capsys, monkeypatch):
    frames = tmp_path / "frames"
    shutil.copytree(clip, frames)
    out = tmp_path / "run"
    full = DiskFull(monkeypatch, after=3)
    assert run_cli(track(frames, out, prompts=swan_prompts), capsys)[0] == 1
    monkeypatch.setattr(Image.Image, "save", full.real)
    saved = masks(out)
    a, b = frames / "00004.jpg", frames / "00005.jpg"  # neither first, middle (6) nor last
    a.rename(tmp_path / "swap")
    b.rename(a)
    (tmp_path / "swap").rename(b)
    code, said = run_cli(track(frames, out, "--resume", prompts=swan_prompts), capsys)
    assert code == 1 and said.count("\n") == 1, said
    assert f"{frames} is not the input of the run in {out} (its content differs:" in said
    assert masks(out) == saved


def test_a_run_recorded_with_the_old_identity_stays_resumable(clip, swan_prompts, tmp_path, capsys, monkeypatch):
    whole = tmp_path / "whole"
    assert run_cli(track(clip, whole, "--end", "7", prompts=swan_prompts), capsys)[0] == 0
    out = tmp_path / "run"
    full = DiskFull(monkeypatch, after=3)
    assert run_cli(track(clip, out, "--end", "7", prompts=swan_prompts), capsys)[0] == 1
    monkeypatch.setattr(Image.Image, "save", full.real)
    state = json.loads((out / "session.json").read_text())
    identity = state["run"]["input"]
    assert identity.pop("sha256") and identity.pop("digest_of") == "frame files"
    (out / "session.json").write_text(json.dumps(state))  # as samtrack wrote it before content digests
    assert run_cli(track(clip, out, "--end", "7", "--resume", prompts=swan_prompts), capsys)[0] == 0
    assert masks(out) == masks(whole)


def test_input_identity_tells_an_edited_video_apart(tmp_path):
    video = DATA / "videos" / "blackswan.mp4"
    edited = tmp_path / "edited.mp4"
    data = bytearray(video.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one frame in the middle of the stream
    edited.write_bytes(bytes(data))
    a, b = input_identity(open_source(video)), input_identity(open_source(edited))
    assert a["digest_of"] == "file" and a["sha256"] != b["sha256"]
    assert input_differences(a, b) == ["its content differs: sha256 of the file"]
    copy = tmp_path / "moved.mp4"
    shutil.copy(video, copy)
    assert input_differences(a, input_identity(open_source(copy))) == []


# -------------------------------------------------- 9, 10: prompts that cannot make an object, labels

@pytest.mark.parametrize("prompt, says", [
    (["--click", "50,50,neg"], "a click prompt needs at least one positive click"),
    (["--object", "bird", "--click", "50,50,neg", "--click", "60,60,neg"],
     "a click prompt needs at least one positive click"),
])
def test_negative_only_clicks_are_refused_before_anything_loads(clip, tmp_path, capsys, prompt, says):
    out = tmp_path / "run"
    code, said = run_cli(track(clip, out, "--segmenter", str(tmp_path / "no-sam"), *prompt), capsys)
    assert code == 2 and said.count("\n") == 1 and says in said, said  # a usage error
    assert not out.exists()


@pytest.mark.parametrize("entry, says", [
    ({"frame": 0, "points": [[50, 50]], "labels": [0]}, "prompt 1: a click prompt needs at least one positive click"),
    ({"frame": 0, "label": [1, 2], "box": [10, 10, 60, 60]}, "prompt 1: label must be one piece of text, got [1, 2]"),
    ({"frame": 0, "label": "x" * 100_000, "box": [10, 10, 60, 60]},
     "prompt 1: a label is at most 200 characters, this one has 100000"),
])
def test_prompt_files_that_cannot_make_an_object_are_refused(clip, tmp_path, capsys, entry, says):
    out = tmp_path / "run"
    prompts = prompts_file(tmp_path / "p", [entry])
    code, said = run_cli(track(clip, out, "--segmenter", str(tmp_path / "no-sam"), prompts=prompts), capsys)
    assert code == 2 and said.count("\n") == 1 and says in said, said  # a usage error
    assert not out.exists()


def test_numbers_as_labels_are_text(clip, tmp_path, capsys):
    out = tmp_path / "run"
    prompts = prompts_file(tmp_path / "p", [{"frame": 0, "label": 7, "mask": swan(0)}])
    assert run_cli(track(clip, out, "--end", "1", prompts=prompts), capsys)[0] == 0
    assert json.loads((out / "objects.json").read_text())["1"]["label"] == "7"


def test_the_object_registry_caps_labels_for_every_entry_point():
    from samtrack.tracking.objects import MAX_LABEL, ObjectRegistry

    registry = ObjectRegistry()
    obj = registry.add("x" * MAX_LABEL, 0, {"kind": "box"})
    with pytest.raises(InputError, match="a label is at most 200 characters, this one has 100000"):
        registry.add("x" * 100_000, 0, {"kind": "box"})
    with pytest.raises(InputError, match="at most 200 characters"):
        registry.relabel(obj, "y" * 201)
    assert registry[obj].label == "x" * MAX_LABEL and len(registry) == 1


def test_a_session_refuses_a_negative_only_click(clip, tmp_path):
    from samtrack.tracking.session import Session

    with Session(clip, tmp_path / "run", tracker=object(), segmenter=object()) as s:
        with pytest.raises(InputError, match="at least one positive click"):
            s.add_object(0, points=[(50, 50)], labels=[0])
        assert len(s.objects) == 0
    assert not (tmp_path / "run").exists()

