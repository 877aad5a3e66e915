"""The page: Gradio 6 blocks wired to `Handlers`, with named API endpoints.

    demo = build_app(AppConfig(settings=Settings(...)))
    demo.queue().launch(server_name="127.0.0.1")

Heavy work (propagation, segment everything, text, audio, outputs) shares one queue slot across all
users (`concurrency_id="heavy"`); clicks and navigation run on their own slots, so they stay responsive
while another tab tracks. Every action that fails puts its message in the status line too (a
`.failure` event), so the message stays after the toast fades and no error badge hides the status.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from samtrack.app.examples import SYNTHETIC
from samtrack.app.exports import CHOICES as EXPORT_CHOICES
from samtrack.app.gestures import GESTURES_JS
from samtrack.app.handlers import MODES, NEW_OBJECT, PANEL_SETTINGS, SOUND_SETTINGS, Handlers
from samtrack.app.uploads import discard_upload
from samtrack.app.weights import tracker_choices, weights_banner
from samtrack.app.workspace import AppConfig
from samtrack.models.detectors import makes_masks
from samtrack.tracking.settings import Settings, leaves

HEAVY = {"concurrency_id": "heavy", "concurrency_limit": 1}
LIGHT = {"concurrency_id": "light", "concurrency_limit": 4}
CSS = """
.samtrack-objects {width: 100%; border-collapse: collapse}
.samtrack-objects td, .samtrack-objects th {padding: 2px 8px; text-align: left}
.samtrack-objects tbody tr {cursor: pointer}
.samtrack-selected {font-weight: bold; outline: 2px solid var(--color-accent)}
.samtrack-hidden {display: none !important}
.samtrack-error {color: var(--error-text-color, #b91c1c); font-weight: 600}
"""


def setting_widget(path: str, settings: Settings, label: str | None = None) -> gr.Component:
    """The control for one setting, from its field: its type, help text and choices."""
    f = dict(leaves())[path]
    value, info = settings.get(path), f.metadata["help"]
    label = label or path
    if path == "tracker.model":
        # Only the listed trackers: a web user must not make the server load or fetch a path or repo of their own.
        return gr.Dropdown(tracker_choices(value, settings.tracker.checkpoint), value=value, label="Tracker",
                           info="'(downloads N MB)': tracking fetches it first")
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
                image = gr.Image(label="Frame", type="numpy", format="jpeg", interactive=False, elem_id="frame",
                                 buttons=[])
                with gr.Row():
                    prev_btn = gr.Button("◀ Previous", size="sm", elem_id="prev")
                    slider = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="slider", scale=4)
                    next_btn = gr.Button("Next ▶", size="sm", elem_id="next")
                # the frame on screen (-1: none; API calls leave it so and name their frame themselves)
                shown = gr.Number(-1, visible="hidden", elem_id="shown", precision=0)
                mode = gr.Radio(list(MODES), value=MODES[0], label="Left click", elem_id="mode",
                                info="Right click: negative click · drag: box · ←/→: frames · Ctrl+Z/Y: undo/redo · "
                                     "Box: click two corners · Select object: click its mask")
                gesture = gr.Textbox(elem_id="gesture", elem_classes=["samtrack-hidden"], show_label=False,
                                     container=False)
                with gr.Row():
                    new_btn = gr.Button("New object", elem_id="new-object")
                    undo_btn = gr.Button("Undo", elem_id="undo")
                    redo_btn = gr.Button("Redo", elem_id="redo")
                    reset_btn = gr.Button("Reset", variant="stop", elem_id="reset")
                status = gr.HTML("Open a video to start.", elem_id="status")
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
                    example = gr.Dropdown(h.example_names(), value=SYNTHETIC, label="Example", elem_id="example-name")
                    example_btn = gr.Button("Open the example", elem_id="example")
                with gr.Tab("Objects"):
                    objects = gr.HTML(elem_id="objects")
                    selector = gr.Dropdown([("New object", NEW_OBJECT)], value=NEW_OBJECT,
                                           label="Prompts make or refine", elem_id="selector")
                    with gr.Row():
                        label = gr.Textbox(label="Label", scale=3)
                        relabel_btn = gr.Button("Relabel", scale=1)
                    delete_btn = gr.Button("Delete selected object", variant="stop")
                with gr.Tab("More prompts"):
                    with gr.Accordion("Brush stroke", open=False, elem_id="brush-accordion"):
                        brush_load = gr.Button("Brush on this frame", elem_id="brush-load")
                        editor = gr.ImageEditor(type="numpy", layers=False, transforms=(), label="Paint over the object",
                                                brush=gr.Brush(colors=["#ff3030"], default_size=12), elem_id="editor")
                        brush_btn = gr.Button("Use the stroke", elem_id="brush-use")
                    with gr.Accordion("Segment everything", open=False):
                        everything_btn = gr.Button("Segment everything on this frame")
                        keep = gr.CheckboxGroup([], label="New segments (untick to drop)")
                        keep_btn = gr.Button("Apply")
                    detector = "SAM 3" if makes_masks(d.detector.model) else "Grounding DINO"
                    with gr.Accordion(f"Text ({detector})", open=False):
                        caption = gr.Textbox(label="Caption", placeholder="swan. duck")
                        thresholds = [setting_widget(path, d) for path in h.text_settings]
                        text_btn = gr.Button("Find")
                        concept_btn = gr.Button("Track these on every frame (SAM 3 tracker)", elem_id="concepts")
                    with gr.Accordion("Sound (AST audio tagging)", open=False):
                        hearing = [setting_widget(path, d) for path in SOUND_SETTINGS]
                        listen_btn = gr.Button("Listen to the soundtrack")
                        sound = gr.CheckboxGroup([], label="Sounds heard (AudioSet label, probability)")
                        ground_btn = gr.Button("Find what makes these sounds")
                with gr.Tab("Settings"):
                    panel = [setting_widget(path, d) for path in PANEL_SETTINGS]
                    settings_btn = gr.Button("Apply settings")
                with gr.Tab("Outputs", elem_id="outputs-tab"):
                    formats = gr.CheckboxGroup(EXPORT_CHOICES, value=[], label="Also export as", elem_id="formats")
                    outputs_btn = gr.Button("Make outputs", elem_id="make-outputs")
                    video = gr.Video(label="Overlay", interactive=False)
                    files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="files")

        page = [image, slider, shown, objects, selector, status]
        quiet = {"show_progress_on": [status]}

        def on(event: Any) -> None:
            """A failed action's message stays in the status line (the toast fades)."""
            event.failure(h.failed, None, status, api_visibility="private", queue=False)

        open_video = h.open_video if config.upload_cache is None else consuming(h.open_video, config.upload_cache)
        on(upload.upload(open_video, [upload, fps], [upload, *page], api_name="open_video", **quiet, **HEAVY))
        on(example_btn.click(h.open_example, [example, fps], [upload, *page], api_name="open_example", **quiet,
                             **HEAVY))
        on(slider.input(h.goto, [slider], page, api_name="goto", trigger_mode="always_last", **quiet, **LIGHT))
        on(prev_btn.click(h.previous, None, page, api_visibility="private", **quiet, **LIGHT))
        on(next_btn.click(h.next, None, page, api_visibility="private", **quiet, **LIGHT))
        on(image.select(h.click, [mode, slider, shown], page, api_visibility="private", **quiet, **LIGHT))
        on(gesture.change(h.gesture, [gesture, slider, shown], page, api_visibility="private", **quiet, **LIGHT))
        on(new_btn.click(h.new_object, None, page, api_visibility="private", **quiet, **LIGHT))
        on(undo_btn.click(h.undo, None, page, api_name="undo", **quiet, **LIGHT))
        on(redo_btn.click(h.redo, None, page, api_name="redo", **quiet, **LIGHT))
        on(reset_btn.click(h.reset, None, page, api_name="reset", **quiet, **LIGHT))
        on(selector.input(h.select_object, [selector], page, api_name="select_object", **quiet, **LIGHT))
        on(relabel_btn.click(h.relabel, [label], page, api_name="relabel", **quiet, **LIGHT))
        on(delete_btn.click(h.delete, None, page, api_name="delete_object", **quiet, **LIGHT))
        on(brush_load.click(h.brush_frame, None, [editor, status], api_visibility="private", **quiet, **LIGHT))
        on(brush_btn.click(h.brush, [editor], [*page, editor], api_visibility="private", **quiet, **LIGHT))
        on(everything_btn.click(h.everything, None, [*page, keep], api_name="segment_everything", **quiet, **HEAVY))
        on(keep_btn.click(h.keep_segments, [keep], [*page, keep], api_name="keep_segments", **quiet, **LIGHT))
        on(text_btn.click(h.text, [caption, *thresholds], page, api_name="add_text", **quiet, **HEAVY))
        on(listen_btn.click(h.sounds, hearing, [sound, status], api_name="sounds", **quiet, **HEAVY))
        on(ground_btn.click(h.ground_sounds, [sound, *thresholds], page, api_name="ground_sounds", **quiet,
                            **HEAVY))
        on(settings_btn.click(h.apply_settings, panel, status, api_name="settings", **quiet, **LIGHT))
        tracking = track_btn.click(h.track, [direction, end, discover, slider, shown], page, api_name="propagate",
                                   **quiet, **HEAVY)
        on(tracking)
        concepts = concept_btn.click(h.track_concepts, [caption, slider, shown], page, api_name="track_concepts",
                                     **quiet, **HEAVY)
        on(concepts)
        stop_btn.click(h.stop, None, page, api_name="stop", cancels=[tracking, concepts], queue=False)
        on(outputs_btn.click(h.outputs, [formats], [video, files, status], api_name="download", **quiet, **HEAVY))
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
