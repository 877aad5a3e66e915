"""SAM 3 concept tracking from the app's Text box ("Track these on every frame"), with the tiny random
SAM 3 whose detector and tracker outputs `sam3_scene.Scene` scripts (SAM 3's own association, hotstart and
NMS run as they are); refinement afterwards goes through the SAM 3 tracker like any tracker."""

from __future__ import annotations

import gradio as gr
import pytest
from sam3_scene import Blob, Scene
from test_app import small_mp4  # noqa: F401 - fixture

from samtrack.app import AppConfig, build_app
from samtrack.models import trackers
from samtrack.models.sam3 import load_sam3
from samtrack.tracking.settings import Settings

pytestmark = pytest.mark.usefixtures("one_thread")


def status(view: tuple) -> str:
    return view[-1]


def test_concepts_from_the_text_box_then_a_refinement(tiny_sam3_video, small_mp4, tmp_path, monkeypatch):  # noqa: F811
    weights = load_sam3(tiny_sam3_video, "concept", device="cpu", precision="fp32")
    Scene(weights.model, weights.processor, lambda i: [Blob("swan", "swan", (2, 2, 12, 12)),
                                                      Blob("duck", "duck", (18, 18, 30, 30))]).install(monkeypatch)
    monkeypatch.setattr(trackers, "load_concept_weights", lambda *args: weights)
    settings = Settings(precision="fp32").updated({"tracker.model": tiny_sam3_video,
                                                   "segmenter.model": tiny_sam3_video})
    demo = build_app(AppConfig(settings=settings, work_root=tmp_path / "work", prefetch=False))
    h, req = demo.handlers, gr.Request(session_hash="concepts")
    try:
        h.open_video(str(small_mp4), 30, req)
        with pytest.raises(gr.Error, match="type what to track"):
            list(h.track_concepts(" ", None, None, req))
        *_, last = h.track_concepts("swan. duck", None, None, req)
        s = h.workspaces.get("concepts").session
        assert [(o.label, o.prompt["kind"]) for o in s.objects.values()] == [("swan", "concept"), ("duck", "concept")]
        assert all(set(s.mask(i).ravel()) == {0, 1, 2} for i in range(len(s)))
        assert "Tracked 12 frames" in status(last)
        with pytest.raises(gr.Error, match="press Reset first"):
            list(h.track_concepts("swan", None, None, req))
        # refine: a box on frame 6 makes a new object; tracking from there uses the SAM 3 tracker
        h.goto(6, req)
        made = h.api_box(6, 60, 40, 120, 80, 0, req)["object"]
        list(h.track("forward", 8, False, None, None, req))
        assert made == 3 and s.passes.timeline.mode == "forward"
    finally:
        h.unload(req)
        h.close()


def test_concept_tracking_needs_sam3_as_the_tracker(tiny_sam, small_mp4, tmp_path):  # noqa: F811
    from conftest import DEAOT_FIXTURES

    settings = Settings().updated({"segmenter.model": tiny_sam, "tracker.model": "deaot-t",
                                   "tracker.checkpoint": str(DEAOT_FIXTURES / "deaott.pth")})
    demo = build_app(AppConfig(settings=settings, work_root=tmp_path / "work", prefetch=False))
    h, req = demo.handlers, gr.Request(session_hash="no-sam3")
    try:
        h.open_video(str(small_mp4), 30, req)
        with pytest.raises(gr.Error, match="needs SAM 3 as the tracker"):
            list(h.track_concepts("swan", None, None, req))
    finally:
        h.unload(req)
        h.close()
