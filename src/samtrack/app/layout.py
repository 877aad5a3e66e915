"""The page: Gradio 6 blocks wired to `Handlers`, with named API endpoints.

    demo = build_app(AppConfig(settings=Settings(...)))
    demo.queue().launch(server_name="127.0.0.1")

Heavy work (propagation, segment everything, text, audio, outputs) shares one queue slot across all
users (`concurrency_id="heavy"`); clicks and navigation run on their own slots, so they stay responsive
while another tab tracks.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from samtrack.app.gestures import GESTURES_JS
from samtrack.app.handlers import NEW_OBJECT, PANEL_SETTINGS, Handlers
from samtrack.app.uploads import discard_upload
from samtrack.app.workspace import AppConfig
from samtrack.models import registry
from samtrack.tracking.settings import Settings, leaves

HEAVY = {"concurrency_id": "heavy", "concurrency_limit": 1}
LIGHT = {"concurrency_id": "light", "concurrency_limit": 4}
CSS = """
.samtrack-objects {width: 100%; border-collapse: collapse}
.samtrack-objects td, .samtrack-objects th {padding: 2px 8px; text-align: left}
.samtrack-selected {font-weight: bold; outline: 2px solid var(--color-accent)}
.samtrack-hidden {display: none !important}
"""


def missing_weights(settings: Settings) -> list[str]:
    """Models the settings name whose weights are neither a local path nor in the cache."""
    wanted = [(settings.segmenter.model, "segmenter"), (settings.tracker.source, "tracker")]
    missing = []
    for name, kind in wanted:
        if Path(name).expanduser().exists():
            continue
        spec = registry.find_spec(name)
        if spec is None or not registry.is_cached(spec):
            missing.append(name if spec is None else spec.name)
    return missing


def weights_banner(settings: Settings) -> str:
    missing = missing_weights(settings)
    if not missing:
        return ""
    return (f"**Weights missing:** {', '.join(missing)}. Prompts and tracking need them: fetch them with "
            f"`samtrack download {' '.join(missing)}` on a machine with internet access (or pass local paths "
            "with `--segmenter` / `--checkpoint`), then restart `samtrack app`.")


def tracker_choices(current: str, checkpoint: str | None) -> list[tuple[str, str]]:
    """(label, name) of every tracker, each marked with what choosing it means: ready (on disk), or the
    download it needs first."""
    choices = []
    for spec in registry.list_specs("tracker"):
        ready = registry.is_cached(spec) or (spec.name == registry.canonical_name(current, "tracker") and checkpoint)
        choices.append((f"{spec.name} ({'on disk' if ready else f'downloads {spec.approx_mb} MB'})", spec.name))
    if current not in [name for _, name in choices] and registry.find_spec(current, "tracker") is None:
        choices.insert(0, (f"{current} (on disk)", current))
    return choices


def setting_widget(path: str, settings: Settings) -> gr.Component:
    """The settings panel's control for one setting, from its field: its type, help text and choices."""
    f = dict(leaves())[path]
    value, label, info = settings.get(path), path, f.metadata["help"]
    if path == "tracker.model":
        return gr.Dropdown(tracker_choices(value, settings.tracker.checkpoint), value=value, label="Tracker",
                           info="downloads happen when tracking starts", allow_custom_value=True)
    if f.metadata.get("choices"):
        return gr.Radio(list(f.metadata["choices"]), value=value, label=label, info=info)
    if isinstance(value, bool):
        return gr.Checkbox(value, label=label, info=info)
    return gr.Number(value, label=label, info=info, precision=0 if isinstance(value, int) else None)


def consuming(open_video: Callable[..., Any], cache: Path) -> Callable[..., Any]:
    """`open_video` (upload, fps, request), deleting the upload's cached copy once the tab has opened it
    (or refused it): the tab works on its own copy, deleted when the tab closes."""

    @functools.wraps(open_video)
    def handler(upload: str | None, fps: float, request: gr.Request) -> Any:
        try:
            return open_video(upload, fps, request)
        finally:
            if upload:
                discard_upload(upload, cache)

    return handler


def build_app(config: AppConfig | None = None, models: Any = None) -> gr.Blocks:
    """The app's page. `models`: a shared ModelPool (default: a new one for this app). With
    `config.upload_cache`, Gradio keeps uploads there (GRADIO_TEMP_DIR is set for this process)."""
    config = config or AppConfig()
    if config.upload_cache is not None:
        os.environ["GRADIO_TEMP_DIR"] = str(config.upload_cache)  # read when the blocks and server are made
    if models is None:
        from samtrack.models.pool import ModelPool

        models = ModelPool()
    h = Handlers(config, models)
    d = config.settings
    with gr.Blocks(title="samtrack", delete_cache=(1800, 3600)) as demo:
        demo.handlers = h  # for tests and the command (shutdown)
        gr.Markdown("## samtrack — segment and track anything\nUpload a video, click on objects, track them, "
                    "fix any frame and track again, download the masks.")
        gr.Markdown(weights_banner(d), elem_id="weights")
        with gr.Row():
            with gr.Column(scale=3):
                image = gr.Image(label="Frame (click to prompt)", type="numpy", format="jpeg",
                                 interactive=False, elem_id="frame", buttons=[])
                with gr.Row():
                    prev_btn = gr.Button("◀ Previous", size="sm", elem_id="prev")
                    slider = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="slider", scale=4)
                    next_btn = gr.Button("Next ▶", size="sm", elem_id="next")
                mode = gr.Radio(["Positive click", "Negative click", "Box"], value="Positive click",
                                label="Left click adds (Box: click two corners)", elem_id="mode",
                                info="Right click: negative click · drag: box · ←/→: frames · Ctrl+Z/Y: undo/redo")
                gesture = gr.Textbox(elem_id="gesture", elem_classes=["samtrack-hidden"], show_label=False,
                                     container=False)
                with gr.Row():
                    new_btn = gr.Button("New object", elem_id="new-object")
                    undo_btn = gr.Button("Undo", elem_id="undo")
                    redo_btn = gr.Button("Redo", elem_id="redo")
                status = gr.Markdown("Open a video to start.", elem_id="status")
                with gr.Group():
                    with gr.Row():
                        direction = gr.Radio(["forward", "backward"], value="forward", label="Track",
                                             elem_id="direction", scale=2)
                        end = gr.Number(-1, label="Last frame (-1: to the end)", precision=0, elem_id="end", scale=1)
                    discover = gr.Checkbox(False, label="Discover new objects every sam_gap frames")
                    with gr.Row():
                        track_btn = gr.Button("Track from this frame", variant="primary", elem_id="track")
                        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Column(scale=2):
                with gr.Tab("Video"):
                    upload = gr.File(label="Video (mp4, mov, avi, mkv, webm) or zip of frames",
                                     file_types=[".mp4", ".mov", ".avi", ".mkv", ".webm", ".zip"],
                                     type="filepath", elem_id="upload")
                    fps = gr.Number(value=30, label="Frames per second (zip of frames)", minimum=1)
                    example_btn = gr.Button("Load the example clip", elem_id="example")
                with gr.Tab("Objects"):
                    objects = gr.HTML(elem_id="objects")
                    selector = gr.Dropdown([("New object", NEW_OBJECT)], value=NEW_OBJECT,
                                           label="Prompts make or refine", elem_id="selector")
                    with gr.Row():
                        label = gr.Textbox(label="Label", scale=3)
                        relabel_btn = gr.Button("Relabel", scale=1)
                    delete_btn = gr.Button("Delete selected object", variant="stop")
                with gr.Tab("More prompts"):
                    with gr.Accordion("Brush stroke", open=False):
                        brush_load = gr.Button("Brush on this frame")
                        editor = gr.ImageEditor(type="numpy", layers=False, transforms=(), label="Paint over the object",
                                                brush=gr.Brush(colors=["#ff3030"], default_size=12))
                        brush_btn = gr.Button("Use the stroke")
                    with gr.Accordion("Segment everything", open=False):
                        everything_btn = gr.Button("Segment everything on this frame")
                        keep = gr.CheckboxGroup([], label="New segments (untick to drop)")
                        keep_btn = gr.Button("Apply")
                    with gr.Accordion("Text (Grounding DINO)", open=False):
                        caption = gr.Textbox(label="Caption", placeholder="swan. duck")
                        box_thr = gr.Slider(0, 1, value=d.detector.box_threshold, step=0.01, label="Box threshold")
                        text_thr = gr.Slider(0, 1, value=d.detector.text_threshold, step=0.01, label="Text threshold")
                        text_btn = gr.Button("Find")
                    with gr.Accordion("Sound (AST audio tagging)", open=False):
                        listen_btn = gr.Button("Listen to the soundtrack")
                        sound = gr.Radio([], label="Sounds (AudioSet label, probability)")
                        ground_btn = gr.Button("Find what makes this sound")
                with gr.Tab("Settings"):
                    panel = [setting_widget(path, d) for path in PANEL_SETTINGS]
                    settings_btn = gr.Button("Apply settings")
                with gr.Tab("Outputs", elem_id="outputs-tab"):
                    outputs_btn = gr.Button("Make outputs", elem_id="make-outputs")
                    video = gr.Video(label="Overlay", interactive=False)
                    files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="files")

        view = [image, slider, objects, selector, status]
        quiet = {"show_progress_on": [status]}
        open_video = h.open_video if config.upload_cache is None else consuming(h.open_video, config.upload_cache)
        upload.upload(open_video, [upload, fps], view, api_name="open_video", **quiet, **HEAVY)
        example_btn.click(h.open_example, None, view, api_name="open_example", **quiet, **HEAVY)
        slider.release(h.goto, [slider], view, api_name="goto", **quiet, **LIGHT)
        prev_btn.click(h.previous, None, view, api_visibility="private", **quiet, **LIGHT)
        next_btn.click(h.next, None, view, api_visibility="private", **quiet, **LIGHT)
        image.select(h.click, [mode], view, api_visibility="private", **quiet, **LIGHT)
        gesture.change(h.gesture, [gesture], view, api_visibility="private", **quiet, **LIGHT)
        new_btn.click(h.new_object, None, view, api_visibility="private", **quiet, **LIGHT)
        undo_btn.click(h.undo, None, view, api_name="undo", **quiet, **LIGHT)
        redo_btn.click(h.redo, None, view, api_name="redo", **quiet, **LIGHT)
        selector.input(h.select_object, [selector], view, api_name="select_object", **quiet, **LIGHT)
        relabel_btn.click(h.relabel, [label], view, api_name="relabel", **quiet, **LIGHT)
        delete_btn.click(h.delete, None, view, api_name="delete_object", **quiet, **LIGHT)
        brush_load.click(h.brush_frame, None, editor, api_visibility="private", **LIGHT)
        brush_btn.click(h.brush, [editor], view, api_visibility="private", **quiet, **LIGHT)
        everything_btn.click(h.everything, None, [*view, keep], api_name="segment_everything", **quiet, **HEAVY)
        keep_btn.click(h.keep_segments, [keep], [*view, keep], api_name="keep_segments", **quiet, **LIGHT)
        text_btn.click(h.text, [caption, box_thr, text_thr], view, api_name="add_text", **quiet, **HEAVY)
        listen_btn.click(h.sounds, None, [sound, status], api_name="sounds", **quiet, **HEAVY)
        ground_btn.click(h.ground_sound, [sound, box_thr, text_thr], view, api_name="ground_sound", **quiet,
                         **HEAVY)
        settings_btn.click(h.apply_settings, panel, status, api_name="settings", **quiet, **LIGHT)
        tracking = track_btn.click(h.track, [direction, end, discover], view, api_name="propagate",
                                   **quiet, **HEAVY)
        stop_btn.click(h.stop, None, view, api_name="stop", cancels=[tracking], queue=False)
        outputs_btn.click(h.outputs, None, [video, files, status], api_name="download", **quiet, **HEAVY)
        gr.api(h.api_click, api_name="add_click", **LIGHT)
        gr.api(h.api_box, api_name="add_box", **LIGHT)
        gr.api(h.api_objects, api_name="objects", **LIGHT)
        demo.unload(h.unload)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, block: bool = True) -> str:
    """Serve the app (no share link; uploads over the configured limit get HTTP 413); returns its URL."""
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, share=False, quiet=True,
                max_file_size=demo.handlers.config.max_upload_bytes,
                prevent_thread_lock=not block, show_error=True, css=CSS, js=GESTURES_JS)
    return demo.local_url
