"""The web app through its API (gradio_client) and its handlers: tiny random SAM, the DeAOT-T fixture."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import av
import gradio as gr
import numpy as np
import pytest
from conftest import DEAOT_FIXTURES, davis_frames
from PIL import Image

from samtrack.app import AppConfig, build_app, launch
from samtrack.app.uploads import extract_frames, parse_size
from samtrack.errors import InputError
from samtrack.io.masks import load_id_mask
from samtrack.tracking.settings import Settings

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
gradio_client = pytest.importorskip("gradio_client")
Client, handle_file = gradio_client.Client, gradio_client.handle_file
MAX_UPLOAD = 3 << 20  # blackswan.mp4 (about 1.3 MB) fits, 4 MB does not


def app_settings(tiny_sam: str) -> Settings:
    return Settings().updated({"segmenter.model": tiny_sam, "tracker.model": "deaot-t",
                               "tracker.checkpoint": str(DEAOT_FIXTURES / "deaott.pth")})


@pytest.fixture(scope="module")
def small_mp4(tmp_path_factory) -> Path:
    """Blackswan frames 0-11 at a quarter of their size, as an H.264 mp4."""
    path = tmp_path_factory.mktemp("small") / "swan.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 212, 120, "yuv420p"
        for p in sorted(davis_frames("blackswan").glob("*.jpg"))[:12]:
            rgb = np.asarray(Image.open(p).convert("RGB").resize((212, 120), Image.BILINEAR))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def server(tiny_sam, tmp_path_factory):
    demo = build_app(AppConfig(settings=app_settings(tiny_sam), max_upload_bytes=MAX_UPLOAD, max_frames=60,
                               work_root=tmp_path_factory.mktemp("app_work")))
    url = launch(demo, block=False)
    yield demo, url
    demo.close()
    demo.handlers.close()


def client(url: str) -> Client:
    return Client(url, verbose=False)


def objects(c: Client) -> dict:
    return c.predict(api_name="/objects")


def test_open_click_track_roll_back_download(server, small_mp4, tmp_path):
    _, url = server
    c = client(url)
    status = c.predict(handle_file(str(small_mp4)), 30, api_name="/open_video")[-1]
    assert "12 frames" in status
    first = c.predict(0, 80, 60, True, 0, api_name="/add_click")
    assert first["object"] == 1 and first["area"] > 0
    refined = c.predict(0, 10, 10, False, 1, api_name="/add_click")  # a negative click refines object 1
    assert refined["object"] == 1 and [o["id"] for o in refined["objects"]] == [1]
    job = c.submit("forward", 6, False, api_name="/propagate")
    previews = list(job)  # live preview: one update per tracked frame (some may be merged)
    assert len(previews) >= 2 and job.result()[-1].startswith("Tracked ")
    # roll back: a box object on frame 3, tracked from there; frames 0-2 keep only object 1
    c.predict(3, api_name="/goto")
    box = c.predict(3, 150, 70, 200, 110, 0, api_name="/add_box")
    assert box["object"] == 2
    final = c.submit("forward", 6, False, api_name="/propagate").result()
    assert "from frame 3" in final[-1]
    video, files, _ = c.predict([], api_name="/download")
    names = {Path(f).name for f in files}
    assert {"masks.zip", "overlay.mp4", "overlay.gif", "masks_rle.json", "objects.json"} <= names
    assert Path(video).stat().st_size > 0
    with zipfile.ZipFile(next(f for f in files if f.endswith("masks.zip"))) as zf:
        zf.extractall(tmp_path)
    masks = [load_id_mask(p) for p in sorted(tmp_path.glob("*.png"))]
    assert len(masks) == 7  # the frames tracked (0-6); frames never tracked get no empty mask
    assert 1 in masks[0] and 2 in masks[3]
    assert all(set(np.unique(m)) <= {0, 1} for m in masks[:3])  # frames before the roll back keep object 1 only


def test_two_clients_are_isolated(server, small_mp4, blackswan_mp4):
    _, url = server
    a, b = client(url), client(url)
    a.predict(handle_file(str(small_mp4)), 30, api_name="/open_video")
    with pytest.raises(Exception, match="open a video first"):
        objects(b)
    b.predict(handle_file(str(blackswan_mp4)), 30, api_name="/open_video")
    assert a.predict(0, 80, 60, True, 0, api_name="/add_click")["object"] == 1
    assert b.predict(0, 400, 250, True, 0, api_name="/add_click")["object"] == 1  # b's own id space
    assert a.predict(0, 30, 30, True, 0, api_name="/add_click")["object"] == 2
    assert objects(a)["frames"] == 12 and objects(b)["frames"] == 50
    applied = b.predict("deaot-t", 5, 8, 255, 20, 0.5, 9999, 9999, "fp32", api_name="/settings")
    assert "sam_gap=5" in applied and [o["id"] for o in objects(b)["objects"]] == [1]  # objects kept
    b.predict(api_name="/undo")
    assert [o["id"] for o in objects(b)["objects"]] == []
    assert [o["id"] for o in objects(a)["objects"]] == [1, 2]


def _tab_folders(demo) -> set:
    return set(demo.handlers.workspaces.root.iterdir())


def _masks_written(folder) -> int:
    return len(list(folder.glob("video-*/run/masks/*.png")))


def test_stop_ends_the_work_within_a_frame(server, blackswan_mp4):
    demo, url = server
    c = client(url)
    others = _tab_folders(demo)  # earlier tests' tabs may be cleaned up meanwhile: count this tab's only
    c.predict(handle_file(str(blackswan_mp4)), 30, api_name="/open_video")
    (tab,) = _tab_folders(demo) - others
    c.predict(0, 420, 250, True, 0, api_name="/add_click")
    before = _masks_written(tab)
    job = c.submit("forward", -1, False, api_name="/propagate")
    deadline = time.monotonic() + 120
    while len(job.outputs()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped = c.predict(api_name="/stop")[-1]
    assert stopped.startswith("Stopped at frame")
    time.sleep(0.3)
    written = _masks_written(tab) - before
    time.sleep(2.0)  # a tracker still running would write a mask every second or so
    assert _masks_written(tab) - before == written
    assert written < 40
    # the session is usable again: a prompt works right away
    assert c.predict(0, 300, 200, True, 0, api_name="/add_click")["object"] == 2


def test_bad_uploads_get_a_message_and_change_nothing(server, small_mp4, tmp_path):
    _, url = server
    c = client(url)
    c.predict(handle_file(str(small_mp4)), 30, api_name="/open_video")
    c.predict(0, 80, 60, True, 0, api_name="/add_click")
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video at all")
    with pytest.raises(Exception, match="cannot read video|not a video|invalid"):
        c.predict(handle_file(str(fake)), 30, api_name="/open_video")
    evil = tmp_path / "frames.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("00000.jpg", b"x")
        zf.writestr("../../escape.jpg", b"x")
    with pytest.raises(Exception, match="outside the archive"):
        c.predict(handle_file(str(evil)), 30, api_name="/open_video")
    assert not (tmp_path.parent / "escape.jpg").exists()
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (MAX_UPLOAD + (1 << 20)))
    with pytest.raises(Exception, match="(?i)exceed|too large|413|maximum"):
        c.predict(handle_file(str(big)), 30, api_name="/open_video")
    state = objects(c)
    assert state["frames"] == 12 and [o["id"] for o in state["objects"]] == [1]


def test_zip_of_frames_opens_with_its_fps(server, tmp_path):
    _, url = server
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(davis_frames("blackswan").glob("*.jpg"))[:5]:
            zf.write(p, arcname=f"seq/{p.name}")
        zf.writestr("seq/readme.txt", "skipped")
    status = client(url).predict(handle_file(str(archive)), 12, api_name="/open_video")[-1]
    assert "5 frames" in status and "12 fps" in status


def test_click_on_the_image_uses_the_mode(server, small_mp4):
    demo, _ = server
    h = demo.handlers
    request = gr.Request(session_hash="select-test")
    h.open_video(str(small_mp4), 30, request)
    view = h.click("Positive click", None, None, gr.SelectData(None, {"index": [80, 60], "value": None}), request)
    assert view[0]["value"].shape == (120, 212, 3) and "Object 1" in view[-1]
    h.click("Box", None, None, gr.SelectData(None, {"index": [150, 70], "value": None}), request)
    h.new_object(request)
    h.click("Box", None, None, gr.SelectData(None, {"index": [150, 70], "value": None}), request)
    view = h.click("Box", None, None, gr.SelectData(None, {"index": [200, 110], "value": None}), request)
    assert "object 2" in view[-1]
    with pytest.raises(gr.Error, match="positive click"):
        h.new_object(request)
        h.click("Negative click", None, None, gr.SelectData(None, {"index": [10, 10], "value": None}), request)
    h.new_object(request)
    assert "object 3" in h.gesture('{"kind": "box", "box": [10, 10, 60, 50], "t": 1}', None, None, request)[-1]  # a drag
    h.select_object(1, request)
    h.click("Positive click", None, None, gr.SelectData(None, {"index": [80, 60], "value": None}), request)
    assert "Object 1: 2 click(s)" in h.gesture('{"kind": "negative", "point": [200, 110], "t": 2}', None, None, request)[-1]
    with pytest.raises(gr.Error, match="unknown gesture"):
        h.gesture('{"kind": "box"}', None, None, request)
    folder = h.workspaces.get("select-test").folder
    h.unload(request)
    assert not folder.exists()


def test_brush_stroke_and_segment_everything_keep_or_drop(server, small_mp4):
    demo, _ = server
    h = demo.handlers
    request = gr.Request(session_hash="more-prompts")
    ws = h.workspaces.get("more-prompts")
    # random SAM weights predict low IoU/stability: open the thresholds so segment-everything finds segments
    ws.settings = Settings.from_dict({**ws.settings.to_dict(), "points_per_side": 4, "pred_iou_thresh": 0.0,
                                      "stability_score_thresh": 0.0, "crop_n_layers": 0, "min_area": 20,
                                      "min_mask_region_area": 0})
    h.open_video(str(small_mp4), 30, request)
    *view, keep = h.everything(request)
    found = keep["value"]
    assert found == list(range(1, len(found) + 1)) and "new object" in view[-1]
    *view, _ = h.keep_segments(found[:1], request)  # untick all but the first
    assert sorted(ws.session.objects) == [1]
    layer = np.zeros((120, 212, 4), np.uint8)
    layer[50:56, 60:140] = (255, 48, 48, 255)  # a horizontal stroke
    editor, _ = h.brush_frame(request)
    assert editor["background"].shape == (120, 212, 3)
    h.new_object(request)
    *view, _ = h.brush({**editor, "layers": [layer]}, request)
    assert f"Stroke → object {found[-1] + 1}" in view[-1]  # ids are never reused
    with pytest.raises(gr.Error, match="paint a stroke"):
        h.brush({**editor, "layers": [np.zeros_like(layer)]}, request)
    h.unload(request)


def test_zip_extraction_rejects_unsafe_names(tmp_path):
    for name in ("../x.jpg", "/etc/x.jpg", "a/../../x.png", "C:/x.jpg"):
        archive = tmp_path / "a.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("ok.jpg", b"x")
            zf.writestr(name, b"x")
        with pytest.raises(InputError, match="outside the archive"):
            extract_frames(archive, tmp_path / "out", 1 << 20, max_frames=100)
        assert not (tmp_path / "out").exists()
    link = zipfile.ZipInfo("link.jpg")
    link.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(InputError, match="link"):
        extract_frames(archive, tmp_path / "out", 1 << 20, max_frames=100)
    assert parse_size("2gb") == 2 << 30 and parse_size("500 MB") == 500 << 20 and parse_size("1024") == 1024


def test_missing_weights_are_named_with_the_command(tmp_path, monkeypatch):
    from samtrack.app.weights import weights_banner

    monkeypatch.setenv("SAMTRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    banner = weights_banner(Settings())
    assert "samtrack download sam-vit-b r50-deaotl" in banner
    assert weights_banner(Settings().updated({"segmenter.model": str(tmp_path), "tracker.checkpoint": str(tmp_path)})) == ""
