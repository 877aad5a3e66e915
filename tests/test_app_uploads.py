"""Issue 24 items 4 and 9: what an upload may cost the app's machine, and what the app leaves behind.

Zip bombs, floods of entries and archives larger than the free space are refused from the archive's
index before anything is unpacked; the app's upload cache is its own folder, emptied as tabs open their
uploads and kept under a size; SIGTERM removes everything the app wrote.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import davis_frames

from samtrack.app import uploads
from samtrack.app.uploads import extract_frames, open_upload
from samtrack.errors import InputError

DEFAULT_UPLOAD = 2 << 30  # `samtrack app`'s default --max-upload


def frames_zip(path: Path, n: int = 3) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            zf.write(davis_frames("blackswan") / f"{i:05d}.jpg", f"clip/{i:05d}.jpg")
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A zip of about 260 KB holding one 256 MiB 'PNG' of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf, \
            zf.open("frames/00000.png", "w", force_zip64=True) as member:
        zeros = bytes(1 << 20)
        for _ in range(256):
            member.write(zeros)
    return path


def test_a_zip_bomb_under_the_upload_limit_is_refused_before_unpacking(bomb, tmp_path):
    assert bomb.stat().st_size < 1 << 20
    dest = tmp_path / "upload"
    with pytest.raises(InputError) as refused:
        open_upload(bomb, dest, fps=30, max_bytes=DEFAULT_UPLOAD, max_frames=10_000)
    assert str(refused.value) == ("the zip holds '00000.png', which unpacks to 256 MB: more than a video frame can be "
                                  "(64 MB); zip the video's frames as .jpg or .png images")
    assert not dest.exists()


def test_a_zip_larger_than_the_free_space_is_refused(tmp_path, monkeypatch):
    archive = frames_zip(tmp_path / "clip.zip")
    usage = namedtuple("usage", "total used free")
    free = uploads.KEEP_FREE + 50_000  # less than the three frames take
    monkeypatch.setattr(uploads.shutil, "disk_usage", lambda path: usage(10 << 30, 10 << 30, free))
    with pytest.raises(InputError, match=r"the zip unpacks to \d+ KB, but this app's disk has 512 MB free \(and keeps "
                                         r"512 MB for the run's outputs\); free some space, or upload less"):
        extract_frames(archive, tmp_path / "out", DEFAULT_UPLOAD, max_frames=100)
    assert not (tmp_path / "out").exists()


def test_the_frames_of_a_zip_are_counted_before_anything_is_unpacked(tmp_path, monkeypatch):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(30_000):
            zf.writestr(f"{i:05d}.png", b"x")
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, *a, **k: opened.append(a) or real_open(self, *a, **k))
    dest = tmp_path / "upload"
    with pytest.raises(InputError, match=r"the zip holds 30000 frames; this app accepts at most 10000 \(--max-frames\)"):
        open_upload(archive, dest, fps=30, max_bytes=DEFAULT_UPLOAD, max_frames=10_000)
    assert opened == [] and not dest.exists()


def test_unpacking_stops_when_a_member_passes_its_declared_size():
    out = io.BytesIO()
    with pytest.raises(InputError, match="'a.png' unpacks to more than the 1 KB it declares"):
        uploads._copy_member(io.BytesIO(bytes(3 << 20)), out, 1 << 10, "a.png")
    assert out.tell() == 0  # the first chunk past the size is not written


def test_a_good_zip_still_opens(tmp_path):
    source = open_upload(frames_zip(tmp_path / "clip.zip"), tmp_path / "upload", fps=24, max_bytes=DEFAULT_UPLOAD,
                         max_frames=10)
    assert len(source) == 3 and source.names == ["00000", "00001", "00002"]
    source.close()


# ------------------------------------------------------------------------------ the upload cache

def test_the_upload_cache_is_kept_under_its_size_oldest_first(tmp_path):
    from samtrack.app.workspace import UploadCacheLimit

    cache = tmp_path / "uploads"
    for n, name in enumerate(("old", "mid", "new")):
        (cache / f"sha-{name}").mkdir(parents=True)
        (cache / f"sha-{name}" / f"{name}.mp4").write_bytes(bytes(400))
        os.utime(cache / f"sha-{name}" / f"{name}.mp4", (1000 + n, 1000 + n))
    assert UploadCacheLimit(cache, 1000).sweep() == 400
    assert sorted(p.name for p in cache.rglob("*")) == ["mid.mp4", "new.mp4", "sha-mid", "sha-new"]


def test_an_opened_upload_leaves_the_apps_cache(tmp_path, monkeypatch):
    pytest.importorskip("gradio_client")
    from gradio_client import Client, handle_file

    from samtrack.app import AppConfig, build_app, launch

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "elsewhere"))  # build_app points it at the app's own
    cache = tmp_path / "uploads"
    demo = build_app(AppConfig(work_root=tmp_path / "work", upload_cache=cache, max_frames=10))
    url = launch(demo, block=False)
    try:
        client = Client(url, verbose=False)
        status = client.predict(handle_file(str(frames_zip(tmp_path / "clip.zip"))), 24, api_name="/open_video")[-1]
        assert "3 frames" in status
        assert list(cache.rglob("clip.zip")) == []  # Gradio's copy is gone: the tab has its own
        assert len(list((tmp_path / "work").rglob("00000.jpg"))) == 1
        assert not (tmp_path / "elsewhere").exists()
    finally:
        demo.close()
        demo.handlers.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_removes_everything_the_app_wrote(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env.update(TMPDIR=str(tmp), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "-m", "samtrack", "app", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        assert [p.name.startswith("samtrack-app-") for p in tmp.iterdir()] == [True]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(tmp.iterdir()) == []
