"""Text and sound prompts in the app with the detector in use (tiny random SAM 3 as detector, tiny random
AST as audio tagger): the Text accordion holds that detector's thresholds, built from the settings'
fields, and every sound heard is grounded at once, with the label-count and threshold controls."""

from __future__ import annotations

import gradio as gr
import pytest
from test_app import app_settings
from test_audio import LABELS, tiny_dir, video_with_sound  # noqa: F401 - fixtures

from samtrack.app import AppConfig, build_app
from samtrack.app.handlers import SOUND_SETTINGS
from samtrack.tracking.settings import leaves


def labels_of(demo: gr.Blocks) -> dict[str, gr.components.Component]:
    return {b.label: b for b in demo.blocks.values() if getattr(b, "label", None)}


@pytest.fixture(scope="module")
def app(tiny_sam, tiny_sam3_video, tiny_dir, tmp_path_factory):  # noqa: F811
    settings = app_settings(tiny_sam).updated({"detector.model": tiny_sam3_video, "audio.model": str(tiny_dir),
                                               "min_area": 1, "min_new_obj_iou": 0.0})
    demo = build_app(AppConfig(settings=settings, work_root=tmp_path_factory.mktemp("prompts_work")))
    yield demo
    demo.handlers.close()


def test_the_text_controls_are_those_of_the_detector_in_use(app, tiny_sam, tmp_path):
    help_of = dict(leaves())
    sam3 = labels_of(app)
    for path in ("detector.score_threshold", "detector.mask_threshold", "detector.box_size_threshold"):
        assert sam3[path].info == help_of[path].metadata["help"]
    assert "detector.box_threshold" not in sam3 and "Text (SAM 3)" in sam3
    dino_app = build_app(AppConfig(settings=app_settings(tiny_sam), work_root=tmp_path, prefetch=False))
    dino_app.handlers.close()
    dino = labels_of(dino_app)
    assert {"detector.box_threshold", "detector.text_threshold", "Text (Grounding DINO)"} <= set(dino)
    assert "detector.score_threshold" not in dino
    for path in SOUND_SETTINGS:
        assert sam3[path].value == app.handlers.config.settings.get(path)


def test_text_uses_the_detectors_thresholds(app, video_with_sound):  # noqa: F811
    h, req = app.handlers, gr.Request(session_hash="text")
    h.open_video(str(video_with_sound), 30, req)
    ws = h.workspaces.get("text")
    nothing = h.text("swan", req, 1.0, 0.5, 1.0)  # no detection scores above 1
    assert nothing[-1] == "'swan' on frame 0: no new object." and not ws.session.objects
    found = h.text("swan", req, 0.0, 0.5, 1.0)[-1]
    assert ws.session.settings.detector.score_threshold == 0.0 and ws.settings.detector.score_threshold == 0.0
    assert found.startswith("'swan' on frame 0: ") and ws.session.objects
    assert {o.label for o in ws.session.objects.values()} == {"swan"}
    h.unload(req)


def test_every_sound_heard_is_grounded_at_once(app, video_with_sound):  # noqa: F811
    h, req = app.handlers, gr.Request(session_hash="sound")
    h.open_video(str(video_with_sound), 30, req)
    ws = h.workspaces.get("sound")
    heard, said = h.sounds(3, 0.0, req)
    assert ws.session.settings.audio.label_num == 3 and ws.session.settings.audio.audio_threshold == 0.0
    assert len(heard["choices"]) == 3 and heard["value"] == [label for label, _ in ws.heard]  # all ticked
    assert set(heard["value"]) <= set(LABELS) and said.startswith("Heard: ")
    chosen = heard["value"][:2]
    view = h.ground_sounds(chosen, req, 0.0, 0.5, 1.0)
    caption = ". ".join(chosen)
    assert view[-1].startswith(f"'{caption}' on frame 0: ")
    prompts = [o.prompt for o in ws.session.objects.values()]
    assert prompts and all(p["kind"] == "audio" and p["caption"] == caption for p in prompts)
    assert all(set(p["sounds"]) == set(chosen) for p in prompts)
    assert {o.label.lower() for o in ws.session.objects.values()} <= {c.lower() for c in chosen}
    with pytest.raises(gr.Error, match="tick at least one sound"):
        h.ground_sounds([], req, 0.0, 0.5, 1.0)
    heard, _ = h.sounds(1, 0.0, req)  # the label count is the control's
    assert len(heard["choices"]) == 1
    h.unload(req)
