"""Issue 23 items 5-9 through the app's handlers and API: one frame index, strokes on the frame they were
painted on, boxes shown, the small things the page says, Reset, examples, and picking an object by its
mask. (The browser test checks the same on the page itself.)"""

from __future__ import annotations

import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from conftest import davis_frames
from test_app import app_settings, client, handle_file, objects, server, small_mp4  # noqa: F401 - fixtures

from samtrack.app import AppConfig, build_app
from samtrack.app.examples import SYNTHETIC
from samtrack.app.view import NEGATIVE, POSITIVE


def select(x: float, y: float) -> gr.SelectData:
    return gr.SelectData(None, {"index": [x, y], "value": None})


@pytest.fixture
def tab(server, small_mp4, request):  # noqa: F811
    """The handlers and a fresh tab with the small clip open."""
    demo, _ = server
    h = demo.handlers
    req = gr.Request(session_hash=f"page-{request.node.name}")
    h.open_video(str(small_mp4), 30, req)
    yield h, req, h.workspaces.get(req.session_hash)
    h.unload(req)


def status(view: tuple) -> str:
    return view[-1]


def test_the_frame_box_and_the_frame_on_screen_are_one_index(tab):
    h, req, ws = tab
    view = h.goto(7, req)
    assert ws.frame == 7 and view[2] == 7 and "Frame 7 of 0–11" in status(view)
    assert view[1] == gr.update()  # the box keeps what was typed (no value sent back while typing)
    assert h.goto(99, req)[1]["value"] == 11 and ws.frame == 11  # out of range: the last frame, box corrected
    h.goto(7, req)
    # typed 5 in the box, clicked the picture of frame 7 before it changed: nothing is added, frame 5 is shown
    view = h.click("Positive click", 5, 7, select(80, 60), req)
    assert ws.frame == 5 and view[2] == 5 and not ws.session.objects
    assert "Frame 5 of 0–11 is shown now" in status(view) and "click again" in status(view)
    # the page was behind (it showed 5 while the tab had moved to 6): same
    h.next(req)
    view = h.click("Positive click", 5, 5, select(80, 60), req)
    assert not ws.session.objects and ws.frame == 5
    view = h.click("Positive click", 5, 5, select(80, 60), req)
    assert "Object 1: 1 click(s) on frame 5" in status(view) and ws.session.mask(5).any()
    assert not ws.session.mask(6).any() and not ws.session.mask(7).any()
    # a drag and Track check the same
    h.new_object(req)
    assert "is shown now" in status(h.gesture('{"kind": "box", "box": [10, 10, 60, 50]}', 8, 5, req))
    assert ws.frame == 8 and sorted(ws.session.objects) == [1]
    *_, last = h.track("forward", 9, False, 3, 8, req)
    assert "Frame 3 of 0–11 is shown now" in status(last) and ws.frame == 3 and not ws.busy


def test_a_stroke_goes_to_the_frame_it_was_painted_on(tab):
    h, req, ws = tab
    h.goto(10, req)
    editor, said = h.brush_frame(req)
    assert "frame 10" in said
    h.next(req)
    assert ws.frame == 11
    layer = np.zeros((120, 212, 4), np.uint8)
    layer[50:56, 60:140] = (255, 48, 48, 255)
    *view, canvas = h.brush({**editor, "layers": [layer]}, req)
    assert "Stroke → object 1 on frame 10 (back on frame 10: the stroke was painted on it)." == status(view)
    assert ws.frame == 10 and view[2] == 10 and view[1]["value"] == 10
    assert ws.session.mask(10).any() and not ws.session.mask(11).any()
    assert canvas["layers"] == []  # a fresh canvas of the same frame for the next stroke


def test_a_box_is_drawn_after_it_is_applied_and_clicks_are_dots(tab):
    h, req, _ws = tab
    view = h.gesture('{"kind": "box", "box": [40, 30, 120, 90]}', None, None, req)
    image = view[0]["value"]
    assert "Box → object 1 on frame 0." == status(view)
    white = np.all(image == 255, axis=-1)
    assert white[30, 40:121].mean() > 0.9 and white[30:91, 40].mean() > 0.9  # the box's outline
    assert white[90, 40:121].mean() > 0.9 and white[30:91, 120].mean() > 0.9
    view = h.click("Positive click", None, None, select(150, 60), req)  # a click starts afresh: no box
    image = view[0]["value"]
    assert not np.all(image[30, 40:121] == 255, axis=-1).mean() > 0.9
    assert (image[60, 150] == POSITIVE).all()
    view = h.gesture('{"kind": "negative", "point": [20, 100]}', None, None, req)  # refines object 1
    assert (view[0]["value"][100, 20] == NEGATIVE).all()


def test_undo_redo_words_and_the_objects_last_frame(tab):
    h, req, ws = tab
    assert status(h.undo(req)) == "Nothing to undo." and status(h.redo(req)) == "Nothing to redo."
    h.click("Positive click", None, None, select(80, 60), req)
    list(h.track("forward", 4, False, None, None, req))
    h.goto(8, req)
    h.click("Positive click", None, None, select(80, 60), req)  # refines object 1 on frame 8
    first, last = objects_row(h, req)
    assert (first, last) == (0, 8)
    assert "Undid: edit object 1" in status(h.undo(req))
    assert objects_row(h, req)[1] == max(i for i in range(12) if 1 in ws.session.mask(i))  # not 8 any more
    assert "Redid: edit object 1" in status(h.redo(req)) and objects_row(h, req) == (0, 8)


def objects_row(h, req) -> tuple[int, int]:
    (obj,) = h.api_objects(req)["objects"]
    return obj["first"], obj["last"]


def test_backward_tracking_counts_what_it_tracks(tab):
    h, req, _ws = tab
    h.goto(3, req)
    h.click("Positive click", None, None, select(80, 60), req)
    views = list(h.track("backward", -1, False, None, None, req))
    progress = [status(v) for v in views[:-1]]
    assert progress and all("/3, " in p for p in progress) and "(3/3, " in progress[-1]
    assert status(views[-1]) == "Tracked 3 frames backward from frame 3: frames 0-2."


def test_a_continued_pass_counts_its_own_frames(tab):
    h, req, ws = tab
    h.click("Positive click", None, None, select(80, 60), req)
    list(h.track("forward", 3, False, None, None, req))
    assert ws.frame == 3
    views = list(h.track("forward", 6, False, None, None, req))  # goes on with the tracker's memory
    assert [status(v).split("(")[1].split(",")[0] for v in views[:-1]] == ["1/3", "2/3", "3/3"]
    assert status(views[-1]) == "Tracked 3 frames forward from frame 3: frames 4-6."


def test_the_tab_is_never_left_busy(tab):
    h, req, ws = tab
    h.click("Positive click", None, None, select(80, 60), req)
    with pytest.raises(gr.Error, match="outside the video"):
        list(h.track("forward", 99, False, None, None, req))  # refused before the first frame
    assert not ws.busy
    views = h.track("forward", 11, False, None, None, req)
    next(views)
    assert ws.busy
    views.close()  # the page went away (or Gradio cancelled the event) in the middle of the pass
    assert not ws.busy and ws.session.status.state == "idle"
    assert "Object 1: 1 click(s) on frame 0" in status(h.click("Positive click", None, None, select(30, 30), req))


def test_a_single_frame_and_the_upload_box(server, tmp_path):  # noqa: F811
    demo, _ = server
    h, req = demo.handlers, gr.Request(session_hash="single-frame")
    archive = tmp_path / "one.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(davis_frames("blackswan") / "00000.jpg", "00000.jpg")
    upload, image, slider, _shown, *_, said = h.open_video(str(archive), 30, req)
    assert upload is None  # the upload box is cleared; the caption and status name what is open
    assert said.startswith("Opened one.zip: a single image (854×480")
    assert slider["visible"] is False and "one.zip · The only frame (0)" in image["label"]
    assert "The only frame (0) · 0 objects" in status(h.next(req))
    h.unload(req)


def test_reset_starts_the_video_afresh(tab):
    h, req, ws = tab
    h.click("Positive click", None, None, select(80, 60), req)
    list(h.track("forward", 3, False, None, None, req))
    run = Path(ws.session.out_dir)
    view = h.reset(req)
    assert status(view).startswith("Reset swan.mp4: every object, mask and undo step is gone")
    s = ws.session
    assert not s.objects and not s.can_undo and not any(s.mask(i).any() for i in range(len(s)))
    assert len(s) == 12 and Path(s.out_dir) == run and not list((run / "masks").glob("*.png"))
    assert s.source.fps == 24  # the video's own rate (the fps box is for zips of frames)
    assert "Object 1: 1 click(s)" in status(h.click("Positive click", None, None, select(80, 60), req))


def test_clicking_an_objects_mask_picks_it_to_refine(tab):
    h, req, ws = tab
    h.gesture('{"kind": "box", "box": [10, 10, 60, 50]}', None, None, req)
    h.new_object(req)
    h.gesture('{"kind": "box", "box": [140, 60, 200, 110]}', None, None, req)
    ids = ws.session.mask(0)
    y, x = (c[0] for c in np.nonzero(ids == 1))
    view = h.click("Select object", None, None, select(x, y), req)
    assert ws.selected == 1 and status(view) == "Prompts now refine object 1." and view[4]["value"] == 1
    assert len(ws.session.objects) == 2  # picking adds nothing
    assert h.gesture('{"kind": "select", "id": 2}', None, None, req)[-1] == "Prompts now refine object 2."
    background = np.argwhere(ids == 0)
    if len(background):
        y, x = background[0]
        with pytest.raises(gr.Error, match="no object at"):
            h.click("Select object", None, None, select(x, y), req)


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory, blackswan_mp4) -> Path:
    """A user's examples folder: the DAVIS clip, a zip of DAVIS frames, and a file that is neither."""
    folder = tmp_path_factory.mktemp("examples")
    (folder / "blackswan.mp4").symlink_to(blackswan_mp4)
    with zipfile.ZipFile(folder / "camel-frames.zip", "w") as zf:
        for p in sorted(davis_frames("camel").glob("*.jpg"))[:4]:
            zf.write(p, f"camel/{p.name}")
    (folder / "notes.txt").write_text("not an example")
    return folder


def test_examples_from_a_folder_beside_the_synthetic_clip(tiny_sam, examples_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("SAMTRACK_EXAMPLES", raising=False)
    monkeypatch.setenv("SAMTRACK_CACHE", str(tmp_path / "cache"))
    demo = build_app(AppConfig(settings=app_settings(tiny_sam), examples=examples_dir, work_root=tmp_path / "work"))
    h, req = demo.handlers, gr.Request(session_hash="examples")
    try:
        assert h.example_names() == [SYNTHETIC, "blackswan.mp4", "camel-frames.zip"]
        assert "Opened blackswan.mp4: a video of 50 frames" in status(h.open_example("blackswan.mp4", 30, req))
        assert "Opened camel-frames.zip: a video of 4 frames (854×480, 12 fps)" in status(
            h.open_example("camel-frames.zip", 12, req))
        assert "Opened Synthetic clip (three moving shapes): a video of 48 frames" in status(
            h.open_example(None, 30, req))
        with pytest.raises(gr.Error, match="there is no example"):
            h.open_example("../../etc/passwd", 30, req)
        with pytest.raises(gr.Error, match="there is no example"):
            h.open_example("notes.txt", 30, req)
    finally:
        h.close()
    # without --examples: $SAMTRACK_EXAMPLES, else <model cache>/examples when it exists, else only the clip
    assert example_names(tmp_path / "w2") == [SYNTHETIC]
    (tmp_path / "cache" / "examples").mkdir(parents=True)
    (tmp_path / "cache" / "examples" / "clip.mp4").symlink_to(examples_dir / "blackswan.mp4")
    assert example_names(tmp_path / "w3") == [SYNTHETIC, "clip.mp4"]
    monkeypatch.setenv("SAMTRACK_EXAMPLES", str(examples_dir))
    assert example_names(tmp_path / "w4") == [SYNTHETIC, "blackswan.mp4", "camel-frames.zip"]


def example_names(work: Path) -> list[str]:
    h = build_app(AppConfig(work_root=work, prefetch=False)).handlers
    h.close()
    return h.example_names()


def test_examples_through_the_api(server):  # noqa: F811
    _, url = server
    c = client(url)
    assert "Opened Synthetic clip" in c.predict(SYNTHETIC, 30, api_name="/open_example")[-1]
    assert objects(c)["frames"] == 48


def test_outputs_say_which_frames_they_hold_and_export_datasets(server, small_mp4, tmp_path):  # noqa: F811
    _, url = server
    c = client(url)
    c.predict(handle_file(str(small_mp4)), 30, api_name="/open_video")
    c.predict(0, 80, 60, True, 0, api_name="/add_click")
    c.submit("forward", 4, False, api_name="/propagate").result()
    _video, files, said = c.predict(["coco", "yolo", "davis"], api_name="/download")
    assert said.startswith("Wrote 5 files for frames 0-4 (5 frames) and 1 object. Exported COCO")
    names = sorted(Path(f).name for f in files)
    assert {"coco.json", "yolo.zip", "davis.zip", "masks.zip"} <= set(names)
    with zipfile.ZipFile(next(f for f in files if f.endswith("davis.zip"))) as zf:
        listed = zf.namelist()
    assert "davis/Annotations/swan/00000.png" in listed and "davis/JPEGImages/swan/00004.jpg" in listed
    assert not any("00005" in n for n in listed)  # only the frames the run covers
    with zipfile.ZipFile(next(f for f in files if f.endswith("yolo.zip"))) as zf:
        assert "yolo/data.yaml" in zf.namelist()
    with pytest.raises(Exception, match="is not in the list of choices"):
        c.predict(["xml"], api_name="/download")
