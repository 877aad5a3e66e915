"""Issue 25 item 3: the frame on screen is encoded in the background, so a click finds its embedding
ready; a tab that moves on drops its request; heavy jobs and tracking run alone; masks are the same as
without it; nothing is downloaded in the background."""

from __future__ import annotations

import threading
import time

import gradio as gr
import numpy as np
import pytest
from test_app import app_settings, small_mp4  # noqa: F401 - fixtures

from samtrack.app import AppConfig, build_app
from samtrack.models.pool import ModelPool
from samtrack.tracking.settings import Settings


class Encodes:
    """Counts the segmenter's image-encoder passes (the shared weights' `embed`), by frame content."""

    def __init__(self, model) -> None:
        self.model, self.real, self.calls = model, model.embed, []
        self.lock = threading.Lock()
        model.embed = self

    def __call__(self, frames):
        with self.lock:
            self.calls.append(frames[0].sum())
        return self.real(frames)

    def restore(self) -> None:
        self.model.embed = self.real


def select(x: float, y: float) -> gr.SelectData:
    return gr.SelectData(None, {"index": [x, y], "value": None})


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def app(tiny_sam, tmp_path):
    demo = build_app(AppConfig(settings=app_settings(tiny_sam), work_root=tmp_path / "work"))
    h = demo.handlers
    h.prefetch.delay = 0.05
    done: list[tuple[str, int]] = []
    h.prefetch.done = lambda ws, frame, seconds: done.append((ws.name, frame))
    yield h, done
    h.close()


def open_tab(h, path, name="t"):
    req = gr.Request(session_hash=name)
    h.open_video(str(path), 30, req)
    return req, h.workspaces.get(name)


def test_a_click_finds_the_frame_on_screen_encoded(app, small_mp4):  # noqa: F811
    h, done = app
    req, ws = open_tab(h, small_mp4)
    wait_for(lambda: ("swan.mp4", 0) in done)  # the segmenter loaded and frame 0 encoded, unasked
    h.goto(3, req)
    wait_for(lambda: ("swan.mp4", 3) in done)
    encodes = Encodes(ws.session.models.segmenter.model)
    try:
        view = h.click("Positive click", None, None, select(80, 60), req)
        assert "Object 1: 1 click(s) on frame 3" in view[-1] and encodes.calls == []
    finally:
        encodes.restore()


def test_a_tab_that_moves_on_drops_its_request(app, small_mp4):  # noqa: F811
    h, done = app
    req, _ = open_tab(h, small_mp4)
    wait_for(lambda: ("swan.mp4", 0) in done)
    h.prefetch.delay = 0.5
    for frame in (4, 5, 6, 7):  # stepping through frames faster than `delay`
        h.goto(frame, req)
    wait_for(lambda: ("swan.mp4", 7) in done)
    time.sleep(0.3)
    assert [f for _, f in done] == [0, 7]


def test_heavy_work_and_tracking_run_alone(app, small_mp4):  # noqa: F811
    h, done = app
    req, _ = open_tab(h, small_mp4)
    wait_for(lambda: ("swan.mp4", 0) in done)
    with h.heavy.job():  # another tab's tracking, say
        h.goto(6, req)
        time.sleep(0.5)
        assert ("swan.mp4", 6) not in done
    wait_for(lambda: ("swan.mp4", 6) in done)
    h.goto(0, req)
    wait_for(lambda: done[-1] == ("swan.mp4", 0))
    h.click("Positive click", None, None, select(80, 60), req)
    before = len(done)
    views = h.track("forward", 8, False, None, None, req)
    for view in views:
        if view[-1].startswith("Tracking"):  # frames on screen while tracking: none of them is encoded
            time.sleep(0.1)
            assert len(done) == before
    wait_for(lambda: done[-1] == ("swan.mp4", 8))  # the frame tracking stopped on, once it is idle


def test_masks_are_the_same_with_and_without_it(tiny_sam, small_mp4, tmp_path):  # noqa: F811
    masks = {}
    for prefetch in (False, True):
        demo = build_app(AppConfig(settings=app_settings(tiny_sam), work_root=tmp_path / str(prefetch),
                                   prefetch=prefetch), models=ModelPool())
        h = demo.handlers
        if prefetch:
            h.prefetch.delay = 0.0  # encode at once: races with the clicks below as much as possible
        req, ws = open_tab(h, small_mp4, f"same-{prefetch}")
        for frame, (x, y) in zip((2, 5, 9, 5, 2), ((80, 60), (150, 70), (30, 30), (100, 90), (190, 100)), strict=True):
            h.goto(frame, req)
            h.new_object(req)
            h.click("Positive click", None, None, select(x, y), req)
        masks[prefetch] = [ws.session.mask(i) for i in (2, 5, 9)]
        h.close()
    assert all(np.array_equal(a, b) for a, b in zip(masks[False], masks[True], strict=True))
    assert all(m.any() for m in masks[True])


def test_nothing_is_downloaded_in_the_background(small_mp4, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SAMTRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    pool = ModelPool()
    demo = build_app(AppConfig(settings=Settings(), work_root=tmp_path / "work"), models=pool)  # sam-vit-b: not here
    h = demo.handlers
    h.prefetch.delay = 0.0
    try:
        req, ws = open_tab(h, small_mp4)
        h.goto(2, req)
        time.sleep(0.5)
        assert pool.loaded() == [] and ws.session.models.loaded("segmenter") is None
    finally:
        h.close()
