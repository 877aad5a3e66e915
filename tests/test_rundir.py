"""Run-directory guards: the --out lock, output-path checks, write failures, input identity."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samtrack.errors import OutputError
from samtrack.io.atomic import atomic_path, writing
from samtrack.io.rundir import LOCK_FILE, RunLock, contents, create_out_dir, input_differences, input_identity
from samtrack.io.sources import open_source

HOLD = """
import sys, time
from samtrack.io.rundir import RunLock
lock = RunLock.open(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def hold_lock(out: Path) -> subprocess.Popen:
    """Another process that takes the lock on `out` and keeps it (PYTHONPATH is inherited)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_at_once_and_a_dead_holders_lock_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        started = time.monotonic()
        with pytest.raises(OutputError, match=rf"{out} is in use by another samtrack run \(pid {holder.pid} on "):
            RunLock.open(out)
        assert time.monotonic() - started < 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_FILE).is_file()  # left behind by the killed process
    lock = RunLock.open(out)
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (out / LOCK_FILE).exists() and contents(out) == []


def test_two_sessions_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    first = RunLock.open(tmp_path / "run")
    assert first.created
    with pytest.raises(OutputError, match=f"pid {os.getpid()}"):
        RunLock.open(tmp_path / "run")
    first.release()
    with RunLock(tmp_path / "run") as again:
        assert again.held
    assert not RunLock.open(tmp_path / "run").created


def test_an_output_path_that_is_a_file_is_named(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    with pytest.raises(OutputError, match=f"{file} is an existing file, not a directory"):
        create_out_dir(file)
    with pytest.raises(OutputError, match=f"lies under {file}, which is an existing file"):
        create_out_dir(file / "run")
    assert file.read_text() == "mine"


@pytest.mark.parametrize("code, says", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"),
                                        (errno.EACCES, "permission denied"), (errno.EPERM, "immutable")])
def test_write_failures_name_the_file_and_leave_no_temporary(tmp_path: Path, monkeypatch, code, says) -> None:
    def fail(src, dst):
        raise OSError(code, os.strerror(code), str(src))

    monkeypatch.setattr(os, "replace", fail)
    target = tmp_path / "run.json"
    with pytest.raises(OutputError, match=f"cannot write {target}: .*{says}") as info, \
            atomic_path(target) as tmp:
        tmp.write_text("{}")
    assert info.value.errno == code
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_pass_through_unchanged(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), writing(tmp_path / "x"):
        raise FileNotFoundError(errno.ENOENT, "gone")


def test_contents_ignores_what_a_failed_start_leaves(tmp_path: Path) -> None:
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / ".00000.png.1-2-ab.tmp").write_bytes(b"x")
    (tmp_path / ".run.json.1-2-cd.tmp").write_text("{")
    (tmp_path / LOCK_FILE).write_text("{}")
    assert contents(tmp_path) == []
    (tmp_path / "masks" / "00000.png").write_bytes(b"x")
    (tmp_path / "overlay.mp4").write_bytes(b"x")
    assert contents(tmp_path) == ["masks/", "overlay.mp4"]


def frames(folder: Path, values: list[int], size=(24, 16)) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, v in enumerate(values):
        noise = rng.integers(0, 20, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(noise + np.uint8(v)).save(folder / f"{i:05d}.png", compress_level=0)  # same bytes per size
    return folder


def test_input_identity_tells_inputs_apart_but_not_moved_copies(tmp_path: Path) -> None:
    a = input_identity(open_source(frames(tmp_path / "a", [10, 100, 200, 30])))
    assert a["frames"] == 4 and a["sample_frames"] == [0, 2, 3]
    assert input_differences(a, input_identity(open_source(tmp_path / "a"))) == []
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    moved = input_identity(open_source(tmp_path / "moved"))
    assert moved["path"] != a["path"] and input_differences(a, moved) == []
    other = frames(tmp_path / "b", [10, 100, 90, 30])  # same count, size and bytes; frame 2 differs
    b = input_identity(open_source(other))
    assert b["bytes"] == a["bytes"]
    assert input_differences(a, b) == ["its content differs: sha256 of the frame files"]
    # A run recorded before content digests is compared by its thumbnails.
    old = {k: v for k, v in a.items() if k not in ("sha256", "digest_of")}
    assert input_differences(old, b) == ["frame 2 looks different"]
    assert input_differences(old, moved) == []
    shorter = input_identity(open_source(frames(tmp_path / "c", [10, 100, 200])))
    assert input_differences(a, shorter)[0] == "4 frames then, 3 now"
    # A decoder one level off (another FFmpeg or Pillow build) is still the same input.
    nudged = {**old, "thumbnails": [[min(v + 1, 255) for v in t] for t in a["thumbnails"]]}
    assert input_differences(nudged, a) == []
