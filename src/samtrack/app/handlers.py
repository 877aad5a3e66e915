"""What every button, click and API call of the app does, on one browser tab's workspace.

Handlers take plain values (plus Gradio's request, which names the tab) and return the page's view:
the frame on screen with its masks, the frame slider, the index of the frame shown, the object list,
the object selector and a status line. Errors a user can cause become one message (a toast, and the
status line once the page asks for it with `failed`) and change nothing. Heavy work (propagation,
segment everything, text, audio, outputs) is queued one job at a time across users by the layout;
clicks stay on their own queue.

The frame on screen (`Workspace.frame`) is the one frame index: actions from the page send the index of
the frame they were made on (`shown`) and the frame box's value; when either differs from the frame on
screen (the page was behind, or the box was typed into and not applied yet), the action is not taken:
the page is brought to the frame the box names, and the status says to act again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from samtrack.app import examples, exports, messages, view
from samtrack.app.prefetch import Heavy, Prefetcher
from samtrack.app.uploads import open_upload
from samtrack.app.weights import download_note, on_disk
from samtrack.app.workspace import AppConfig, Workspace, Workspaces
from samtrack.errors import InputError, SamtrackError
from samtrack.io.outputs import OUTPUT_FILES, RUN_JSON, frame_span
from samtrack.tracking import prompts as P
from samtrack.tracking.settings import Settings

log = logging.getLogger(__name__)

NEW_OBJECT = 0  # the object selector's "new object" entry
MODES = ("Positive click", "Negative click", "Box", "Select object")  # what a left click on the frame does
DOWNLOADS = tuple(name for name in OUTPUT_FILES if name != RUN_JSON)  # what the Outputs tab offers
# Settings the panel edits, by dotted path (the rest come from the command line).
PANEL_SETTINGS = ("tracker.model", "sam_gap", "everything.points_per_side", "max_obj_num", "min_area",
                  "min_new_obj_iou", "tracker.long_term_mem_gap", "tracker.max_len_long_term", "precision")
SOUND_SETTINGS = ("audio.label_num", "audio.audio_threshold")  # the Sound accordion's controls


def detector_settings(settings: Settings) -> tuple[str, ...]:
    """The settings (dotted paths) the text detector in use reads, as its class declares them: Grounding
    DINO's box/text thresholds, or SAM 3's score/mask thresholds (and the box size limit of both)."""
    from samtrack.models.detectors import makes_masks

    if makes_masks(settings.detector.model):
        from samtrack.models.sam3.detector import Sam3Detector as Detector
    else:
        from samtrack.models.grounding import Detector
    return tuple(f"detector.{name}" for name in Detector.options)


def segmenter_ready(session: Any) -> bool:
    """Whether the session's segmenter is loaded, or loads without a download (for background work)."""
    return session.models.loaded("segmenter") is not None or on_disk(session.settings.segmenter.model, "segmenter")


class Handlers:
    """The app's actions; one instance per app, shared by every tab."""

    def __init__(self, config: AppConfig, models: Any) -> None:
        self.config = config
        self.models = models  # ModelPool: loaded once, shared by every tab's session
        self.workspaces = Workspaces(config)
        self.text_settings = detector_settings(config.settings)
        folder = config.examples if config.examples is not None else examples.default_folder()
        self.examples = examples.example_files(folder)
        self.heavy = Heavy()
        self.prefetch = Prefetcher(self.heavy, segmenter_ready) if config.prefetch else None
        roots = [self.workspaces.root, Path(tempfile.gettempdir())]
        self._roots = roots + ([config.upload_cache] if config.upload_cache is not None else [])

    def ws(self, request: gr.Request) -> Workspace:
        if request is None or not request.session_hash:
            raise gr.Error("no browser session")
        return self.workspaces.get(request.session_hash)

    def close(self) -> None:
        """Stop the background encoder and close every tab (the app is shutting down)."""
        if self.prefetch is not None:
            self.prefetch.close()
        self.workspaces.close()

    # ------------------------------------------------------------------ messages
    @contextlib.contextmanager
    def errors(self, ws: Workspace) -> Iterator[None]:
        """Errors become one message for the page (and API clients): in the user's words, escaped for
        the toast, kept for the status line (`failed`). Nothing else escapes a handler."""
        try:
            yield
        except gr.Error as exc:
            ws.error = str(exc.message)
            raise
        except SamtrackError as exc:
            raise self._error(ws, str(exc)) from exc
        except Exception as exc:
            log.exception("samtrack app: unexpected error")
            raise self._error(ws, f"unexpected error ({type(exc).__name__}: {exc}); the app's log has the "
                                  "details") from exc

    def _error(self, ws: Workspace, text: str) -> gr.Error:
        ws.error = messages.public(text, ws.names, self._roots)
        return gr.Error(messages.escape(ws.error), print_exception=False)

    def failed(self, request: gr.Request) -> str:
        """The status line after an action failed: its message (the toast fades, this stays)."""
        return messages.status_html(self.ws(request).error or "that did not work", error=True)

    # ------------------------------------------------------------------ the view
    def render(self, ws: Workspace, ids: np.ndarray | None = None) -> np.ndarray | None:
        s = ws.session
        if s is None:
            return None
        ids = s.mask(ws.frame) if ids is None else ids
        labels = {k: o.label for k, o in s.objects.items()}
        return view.frame_view(s.frame(ws.frame), ids, labels, ws.points, ws.labels, ws.corner, ws.box)

    def view(self, ws: Workspace, status: str, ids: np.ndarray | None = None, *, slider: bool = True) -> tuple:
        """(frame image, frame slider, frame shown, object list, object selector, status) for the page.
        `slider` False leaves the frame box as the user typed it."""
        s = ws.session
        if s is None:
            return (gr.update(value=None, label="Frame"), gr.update(value=0, maximum=1, visible=True), None,
                    view.objects_table({}, {}, None), gr.update(choices=[("New object", NEW_OBJECT)], value=NEW_OBJECT),
                    messages.status_html(status))
        n = len(s)
        if ids is None and self.prefetch is not None:
            self.prefetch.request(ws)
        choices = [("New object", NEW_OBJECT)] + [(f"{k} · {o.label}", k) for k, o in sorted(s.objects.items())]
        label = f"{ws.name} · {view.frames_text(ws.frame, n)} (click to prompt)"
        frame_box = gr.update(value=ws.frame, maximum=max(n - 1, 1), visible=n > 1) if slider else gr.update()
        return (gr.update(value=self.render(ws, ids), label=label), frame_box, ws.frame,
                view.objects_table(s.objects, ws.spans(), ws.selected),
                gr.update(choices=choices, value=ws.selected or NEW_OBJECT), messages.status_html(status))

    def _summary(self, ws: Workspace) -> str:
        s = ws.session
        return f"{view.frames_text(ws.frame, len(s))} · {view.plural(len(s.objects), 'object')}"

    def _goto(self, ws: Workspace, frame: int) -> None:
        s = ws.require_session()
        frame = int(frame)
        if not 0 <= frame < len(s):
            raise InputError(f"frame {frame} is outside the video (frames 0..{len(s) - 1})")
        if frame != ws.frame:
            ws.clear_prompt()
        ws.frame = frame

    def _note_frame(self, ws: Workspace, index: int | None = None) -> None:
        index = ws.frame if index is None else index
        ids = ws.session.mask(index)
        ws.note(index, np.unique(ids[ids > 0]).tolist())

    def _catch_up(self, ws: Workspace, frame_box: float | None, shown: float | None, action: str) -> str | None:
        """None when the page shows the frame on screen and its frame box agrees (or the call names no
        frame: `shown` None or -1, as API calls). Else the page is brought to the frame the box names, and the message says so."""
        s = ws.require_session()
        if shown is None or shown < 0:
            return None
        shown = int(shown)
        wanted = shown if frame_box is None else min(max(round(float(frame_box)), 0), len(s) - 1)
        if shown == ws.frame and wanted == shown:
            return None
        self._goto(ws, wanted)
        return (f"{view.frames_text(wanted, len(s))} is shown now (the {action} was made while another frame was "
                f"on screen): {action} again.")

    # ------------------------------------------------------------------ input
    def _open(self, ws: Workspace, path: str | Path, name: str, fps: float | None) -> tuple:
        """Open a video or zip of frames in this tab (replacing what it had open)."""
        from samtrack.tracking.session import Session

        if ws.busy:
            raise InputError("tracking is running: press Stop first")
        ws.opened += 1
        folder = ws.folder / f"video-{ws.opened}"
        ws.names[str(path)] = name
        source = open_upload(path, folder / "input", fps=fps, max_bytes=self.config.max_upload_bytes,
                             max_frames=self.config.max_frames)
        previous = ws.session
        ws.close_session()
        if previous is not None:
            shutil.rmtree(Path(previous.out_dir).parent, ignore_errors=True)
        ws.session = s = Session(source, folder / "run", ws.settings, models=self.models)
        ws.name, ws.reopen = name, (Path(source.path), source.fps)  # a video's own rate, a zip's as given
        ws.names = {str(source.path): name, str(folder / "run"): f"the run of {name}"}
        kind = "a single image" if len(s) == 1 else f"a video of {len(s)} frames"
        return self.view(ws, f"Opened {name}: {kind} ({s.source.width}×{s.source.height}, {s.source.fps:g} fps). "
                             "Click on an object to segment it.")

    def open_video(self, upload: str | None, fps: float, request: gr.Request) -> tuple:
        """Open an uploaded video or zip of frames in this tab: (upload box, *view). The upload box is
        cleared: the status and the frame's caption name what is open."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            if not upload:
                raise InputError("choose a video or a zip of frames to upload")
            try:
                return (None, *self._open(ws, upload, Path(upload).name, fps))
            finally:
                ws.names.pop(str(upload), None)

    def open_example(self, name: str | None, fps: float, request: gr.Request) -> tuple:
        """Open an example: the synthetic clip, or a file of the examples folder, by name."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            name = name or examples.SYNTHETIC
            if name == examples.SYNTHETIC:
                path = examples.synthetic_clip(self.workspaces.root)
            elif name in self.examples:
                path = self.examples[name]
            else:
                raise InputError(f"there is no example {name!r}; choose one of the list")
            return (None, *self._open(ws, path, name, fps))

    def example_names(self) -> list[str]:
        return [examples.SYNTHETIC, *self.examples]

    def reset(self, request: gr.Request) -> tuple:
        """Start this tab's video afresh: every object, mask and undo step goes; the video and the
        settings stay."""
        from samtrack.io.sources import open_source
        from samtrack.tracking.session import Session

        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            s = ws.require_idle()
            (path, fps), name, names, run = ws.reopen, ws.name, ws.names, Path(s.out_dir)
            ws.close_session()
            shutil.rmtree(run, ignore_errors=True)
            ws.session = Session(open_source(path, fps=fps), run, ws.settings, models=self.models)
            ws.name, ws.reopen, ws.names = name, (path, fps), names
            return self.view(ws, f"Reset {name}: every object, mask and undo step is gone (the video and the "
                                 "settings stay).")

    # ------------------------------------------------------------------ navigation
    def goto(self, frame: float | None, request: gr.Request) -> tuple:
        """Show a frame (the frame box and slider): out-of-range numbers go to the first or last frame."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            s = ws.require_session()
            if frame is None:  # the box is being typed into
                return self.view(ws, self._summary(ws), slider=False)
            wanted = round(float(frame))
            self._goto(ws, min(max(wanted, 0), len(s) - 1))
            return self.view(ws, self._summary(ws), slider=ws.frame != wanted)

    def previous(self, request: gr.Request) -> tuple:
        return self._step(-1, request)

    def next(self, request: gr.Request) -> tuple:
        return self._step(1, request)

    def _step(self, delta: int, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            s = ws.require_session()
            self._goto(ws, min(max(ws.frame + delta, 0), len(s) - 1))
            return self.view(ws, self._summary(ws))

    # ------------------------------------------------------------------ objects
    def _select(self, ws: Workspace, obj_id: int | None) -> str:
        s = ws.require_session()
        chosen = int(obj_id or 0) or None
        if chosen is not None and chosen not in s.objects:
            raise InputError(f"there is no object {chosen}; known ids: {sorted(s.objects) or 'none'}")
        if chosen != ws.selected:
            ws.clear_prompt()
        ws.selected = chosen
        return f"Prompts now refine object {chosen}." if chosen else "The next prompt makes a new object."

    def select_object(self, obj_id: int | None, request: gr.Request) -> tuple:
        """Choose the object later prompts refine (0: the next prompt makes a new one)."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            return self.view(ws, self._select(ws, obj_id))

    def relabel(self, label: str, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            s = ws.require_idle()
            if ws.selected is None:
                raise InputError("select an object to relabel")
            if not label.strip():
                raise InputError("type the new label first")
            s.relabel(ws.selected, label.strip())
            return self.view(ws, f"Object {ws.selected} is now {label.strip()!r}.")

    def delete(self, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            s = ws.require_idle()
            if ws.selected is None:
                raise InputError("select an object to delete")
            gone = ws.selected
            s.remove_object(gone)
            ws.forget(gone)
            ws.selected = None
            ws.clear_prompt()
            return self.view(ws, f"Deleted object {gone} from every frame.")

    def undo(self, request: gr.Request) -> tuple:
        return self._history(request, redo=False)

    def redo(self, request: gr.Request) -> tuple:
        return self._history(request, redo=True)

    def _history(self, request: gr.Request, *, redo: bool) -> tuple:
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            s = ws.require_idle()
            name = s.redo() if redo else s.undo()
            for index in s.changed_frames:
                self._note_frame(ws, index)
            ws.clear_prompt()
            if ws.selected not in s.objects:
                ws.selected = None
            if name is None:
                return self.view(ws, f"Nothing to {'redo' if redo else 'undo'}.")
            return self.view(ws, f"{'Redid' if redo else 'Undid'}: {name}.")

    # ------------------------------------------------------------------ prompts
    def add_click(self, frame: int, x: float, y: float, positive: bool, obj_id: int | None,
                  ws: Workspace) -> int:
        """A click at (x, y) on `frame`: refines the selected object (`obj_id`) or starts a new one."""
        s = ws.require_idle()
        self._goto(ws, frame)
        selected = int(obj_id) if obj_id else None
        if selected is not None and selected not in s.objects:
            raise InputError(f"unknown object id {selected}; known ids: {sorted(s.objects) or 'none'}")
        if selected != ws.selected:
            ws.clear_prompt()
        if selected is None and not ws.points and not positive:
            raise InputError("start an object with a positive click (a negative click removes area from it)")
        points, labels = ws.points + [(float(x), float(y))], ws.labels + [int(bool(positive))]
        with ws.models_lock:
            made = s.add_object(ws.frame, points=points, labels=labels, obj_id=selected)
        ws.selected, ws.points, ws.labels, ws.corner, ws.box = made, points, labels, None, None
        self._note_frame(ws)
        return made

    def add_box(self, frame: int, box: tuple[float, float, float, float], obj_id: int | None,
                ws: Workspace) -> int:
        s = ws.require_idle()
        self._goto(ws, frame)
        x0, y0, x1, y1 = box
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            raise InputError("the box is too small: drag or click two corners further apart")
        with ws.models_lock:
            made = s.add_object(ws.frame, box=box, obj_id=int(obj_id) if obj_id else None)
        ws.clear_prompt()
        ws.selected, ws.box = made, box
        self._note_frame(ws)
        return made

    def _pick(self, ws: Workspace, x: float, y: float) -> str:
        """Select the object whose mask is under (x, y) on the frame on screen."""
        s = ws.require_session()
        ids = s.mask(ws.frame)
        xi, yi = min(max(int(x), 0), ids.shape[1] - 1), min(max(int(y), 0), ids.shape[0] - 1)
        obj_id = int(ids[yi, xi])
        if obj_id == 0:
            raise InputError(f"no object at ({xi}, {yi}) on frame {ws.frame}: click on an object's mask to select "
                             "it (or choose it in the Objects tab)")
        return self._select(ws, obj_id)

    def click(self, mode: str, frame_box: float | None, shown: float | None, evt: gr.SelectData,
              request: gr.Request) -> tuple:
        """A click on the frame image: positive/negative click, one corner of a box, or picking the object
        to refine. `frame_box` and `shown`: the page's frame box and the frame it shows."""
        ws = self.ws(request)
        x, y = (float(v) for v in evt.index[:2])
        with self.errors(ws), ws.lock:
            ws.require_idle()
            stale = self._catch_up(ws, frame_box, shown, "click")
            if stale:
                return self.view(ws, stale)
            if mode == "Select object":
                return self.view(ws, self._pick(ws, x, y))
            if mode == "Box":
                if ws.corner is None:
                    ws.points, ws.labels, ws.box, ws.corner = [], [], None, (x, y)
                    return self.view(ws, "Box: now click the opposite corner.")
                made = self.add_box(ws.frame, (*ws.corner, x, y), ws.selected, ws)
                return self.view(ws, f"Box → object {made} on frame {ws.frame}.")
            started = time.perf_counter()
            made = self.add_click(ws.frame, x, y, mode != "Negative click", ws.selected, ws)
            ms = (time.perf_counter() - started) * 1000
            return self.view(ws, f"Object {made}: {len(ws.points)} click(s) on frame {ws.frame} ({ms:.0f} ms).")

    def gesture(self, data: str, frame_box: float | None, shown: float | None, request: gr.Request) -> tuple:
        """A gesture from the page's script, on the frame on screen: {"kind": "negative", "point": [x, y]}
        (right click), {"kind": "box", "box": [x0, y0, x1, y1]} (drag), {"kind": "select", "id": N} (a row
        of the object list)."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            try:
                event = json.loads(data)
                kind = event["kind"]
                key = {"negative": "point", "box": "box", "select": "id"}[kind]
                values = [float(v) for v in np.atleast_1d(event[key])]
            except (ValueError, KeyError, TypeError):
                raise InputError(f"unknown gesture {data!r}") from None
            if kind == "select":
                return self.view(ws, self._select(ws, int(values[0])))
            ws.require_idle()
            stale = self._catch_up(ws, frame_box, shown, "click" if kind == "negative" else "box")
            if stale:
                return self.view(ws, stale)
            if kind == "negative":
                made = self.add_click(ws.frame, *values[:2], False, ws.selected, ws)
                return self.view(ws, f"Object {made}: {len(ws.points)} click(s) on frame {ws.frame}.")
            made = self.add_box(ws.frame, tuple(values[:4]), ws.selected, ws)
            return self.view(ws, f"Box → object {made} on frame {ws.frame}.")

    def new_object(self, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            ws.require_session()
            ws.selected = None
            ws.clear_prompt()
            return self.view(ws, "The next prompt makes a new object.")

    def brush_frame(self, request: gr.Request) -> tuple[dict, str]:
        """The frame on screen as the brush canvas's background; the stroke painted on it belongs to it."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            s = ws.require_session()
            ws.brush_frame = ws.frame
            return ({"background": s.frame(ws.frame), "layers": [], "composite": None},
                    messages.status_html(f"Brush: paint over the object on frame {ws.frame}, then press "
                                         "'Use the stroke'."))

    def brush(self, editor: dict | None, request: gr.Request) -> tuple:
        """A brush stroke (painted on the canvas's layer) as a prompt on the frame the canvas shows: its
        box, with points along it. The page goes to that frame if it has moved on since."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            s = ws.require_idle()
            if ws.brush_frame is None:
                raise InputError("press 'Brush on this frame' first, then paint over the object")
            layers = (editor or {}).get("layers") or []
            if not layers or layers[0] is None:
                raise InputError("paint a stroke over the object first")
            layer = np.asarray(layers[0])
            painted = layer[..., 3] > 0 if layer.ndim == 3 and layer.shape[2] == 4 else layer.any(axis=-1)
            if painted.shape != (s.source.height, s.source.width):
                raise InputError("the brush canvas does not match this video: press 'Brush on this frame' again")
            points = view.stroke_points(painted)
            if not points:
                raise InputError("paint a stroke over the object first")
            frame, moved = ws.brush_frame, ws.brush_frame != ws.frame
            self._goto(ws, frame)
            with ws.models_lock:
                made = s.add_object(frame, stroke=points, obj_id=ws.selected)
            ws.clear_prompt()
            ws.selected = made
            self._note_frame(ws)
            note = f" (back on frame {frame}: the stroke was painted on it)" if moved else ""
            canvas = {"background": s.frame(frame), "layers": [], "composite": None}
            return (*self.view(ws, f"Stroke → object {made} on frame {frame}{note}."), canvas)

    def everything(self, request: gr.Request) -> tuple:
        """Segment everything on the frame; new segments become objects, listed for keep or drop."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock, self.heavy.job():
            s = ws.require_idle()
            ws.clear_prompt()
            with ws.models_lock:
                ws.segments = s.segment_everything(ws.frame)
            self._note_frame(ws)
            keep = gr.update(choices=[(f"{k} · {s.objects[k].label}", k) for k in ws.segments], value=ws.segments)
            return (*self.view(ws, f"Segment everything found {view.plural(len(ws.segments), 'new object')}: untick "
                                   "the ones to drop, then Apply."), keep)

    def keep_segments(self, kept: list[int] | None, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            s = ws.require_idle()
            drop = [k for k in ws.segments if k not in set(kept or []) and k in s.objects]
            for obj_id in drop:
                s.remove_object(obj_id)
                ws.forget(obj_id)
            ws.segments = []
            return (*self.view(ws, f"Kept {len(kept or [])} segments, dropped {len(drop)}."),
                    gr.update(choices=[], value=[]))

    def _update_settings(self, ws: Workspace, values: dict[str, Any]) -> None:
        """Change some of this tab's settings (its objects and masks stay)."""
        ws.settings = ws.settings.updated(values)
        if ws.session is not None:
            with ws.models_lock:
                ws.session.update_settings(ws.session.settings.updated(values))

    def _find(self, ws: Workspace, caption: str, sounds: dict[str, float] | None) -> tuple:
        s = ws.require_idle()
        ws.clear_prompt()
        with ws.models_lock:
            added = s.add_objects_from_text(ws.frame, caption, sounds)
        self._note_frame(ws)
        found = f"{view.plural(len(added), 'new object')} {added}" if added else "no new object"
        return self.view(ws, f"{caption!r} on frame {ws.frame}: {found}.")

    def text(self, caption: str, request: gr.Request, *values: Any) -> tuple:
        """Objects named by a caption on the frame; `values`: the detector's thresholds
        (`text_settings`, in order)."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock, self.heavy.job():
            ws.require_idle()
            if not (caption or "").strip():
                raise InputError('type what to find, e.g. "swan. duck"')
            self._update_settings(ws, self._values(self.text_settings, values))
            return self._find(ws, caption.strip(), None)

    def _values(self, paths: tuple[str, ...], values: tuple) -> dict[str, Any]:
        if len(values) != len(paths):
            raise InputError(f"expected {len(paths)} values ({', '.join(paths)}), got {len(values)}")
        return dict(zip(paths, values, strict=True))

    def sounds(self, label_num: float, threshold: float, request: gr.Request) -> tuple:
        """The soundtrack's AudioSet labels (at most `label_num`, each above `threshold`), all ticked."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock, self.heavy.job():
            s = ws.require_idle()
            self._update_settings(ws, self._values(SOUND_SETTINGS, (label_num, threshold)))
            with ws.models_lock:
                ws.heard = s.sounds()
            if not ws.heard:
                raise InputError(f"no sound label is above the threshold {ws.settings.audio.audio_threshold}; "
                                 "lower it and listen again")
            choices = [(f"{label} ({p:.2f})", label) for label, p in ws.heard]
            return (gr.update(choices=choices, value=[label for label, _ in ws.heard]),
                    messages.status_html(f"Heard: {', '.join(c for c, _ in choices)}. Untick what not to look for, "
                                         "then Find."))

    def ground_sounds(self, labels: list[str] | None, request: gr.Request, *values: Any) -> tuple:
        """Find what makes every ticked sound at once (one caption naming them all, as SAM-Track grounds
        every label heard); `values`: the detector's thresholds, as for `text`."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock, self.heavy.job():
            ws.require_idle()
            chosen = [(label, p) for label, p in ws.heard if label in set(labels or [])]
            if not chosen:
                raise InputError("press 'Listen to the soundtrack' and tick at least one sound first")
            self._update_settings(ws, self._values(self.text_settings, values))
            return self._find(ws, P.audio_caption(chosen), dict(chosen))

    # ------------------------------------------------------------------ tracking
    def track(self, direction: str, end: float | None, discover: bool, frame_box: float | None, shown: float | None,
              request: gr.Request, progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:  # noqa: B008
        """Propagate from the frame on screen, showing each frame as it is tracked; Stop ends it. The
        tab is idle again however it ends (finished, stopped, failed, or the page went away)."""
        yield from self._pass(request, progress, direction, end, discover, frame_box, shown)

    def track_concepts(self, caption: str, frame_box: float | None, shown: float | None, request: gr.Request,
                       progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:  # noqa: B008
        """SAM 3 concept tracking from the frame on screen: every instance of the caption's categories,
        detected and tracked by SAM 3 on every frame (the tracker must be SAM 3; the video must hold no
        objects yet). Refinement afterwards: prompt a frame, then Track from it (the SAM 3 tracker)."""
        ws = self.ws(request)
        with self.errors(ws):
            s = ws.require_idle()
            if not caption.strip():
                raise InputError('type what to track, e.g. "swan. duck"')
            if not s.models.tracks_concepts():
                raise InputError("tracking text categories on every frame needs SAM 3 as the tracker: choose sam3 "
                                 "under Settings (or start the app with --tracker sam3)")
            if len(s.objects):
                raise InputError("concept tracking starts from a video without objects: press Reset first")
        yield from self._pass(request, progress, "forward", -1, True, frame_box, shown, categories=caption.strip())

    def _pass(self, request: gr.Request, progress: gr.Progress, direction: str, end: float | None, discover: bool,
              frame_box: float | None, shown: float | None, categories: str | None = None) -> Iterator[tuple]:
        """One pass from the frame on screen, streamed to the page (see `track`)."""
        from samtrack.tracking import Cancelled

        ws = self.ws(request)
        started_busy = False
        try:
            with self.errors(ws):
                with ws.lock:
                    s = ws.require_idle()
                    stale = self._catch_up(ws, frame_box, shown, "Track")
                    if stale is None:
                        ws.busy = started_busy = True
                        ws.clear_prompt()
                if stale is not None:
                    yield self.view(ws, stale)
                    return
                with self.heavy.job():
                    with ws.models_lock:
                        pass  # a background encode of this tab ends first: a pass may use the segmenter
                    start, backward = ws.frame, direction == "backward"
                    last = (0 if backward else len(s) - 1) if end is None or end < 0 else int(end)
                    done, total, seen, t0 = 0, 0, [], time.perf_counter()
                    frames = s.iter_propagate(start, last, direction="backward" if backward else "forward",
                                              discover=bool(discover), categories=categories)
                    try:
                        for r in frames:
                            if not done:  # the frames this pass makes: the session counts a continued
                                st = s.status  # forward pass from its timeline's start
                                total = st.total - st.done + 1
                            done += 1
                            seen.append(r.index)
                            ws.frame = r.index
                            ws.note(r.index, r.objects)
                            progress((done, total), desc="tracking")
                            rate = done / (time.perf_counter() - t0)
                            yield self.view(ws, f"Tracking {direction}: frame {r.index} ({done}/{total}, "
                                                f"{rate:.2f} frames/s)", ids=r.ids)
                        status = (f"Tracked {view.plural(done, 'frame')} {direction} from frame {start}"
                                  + (f": {frame_span(sorted(seen))}." if seen else "."))
                    except Cancelled:
                        status = f"Stopped at frame {ws.frame} after {view.plural(done, 'frame')}."
                    finally:
                        frames.close()
        finally:
            if started_busy:
                ws.busy = False
        yield self.view(ws, status)

    def stop(self, request: gr.Request) -> tuple:
        """Stop this tab's propagation within one frame; frames tracked so far are kept."""
        ws = self.ws(request)
        if ws.session is None or not ws.busy:
            return self.view(ws, "Nothing is running.")
        ws.session.cancel()
        deadline = time.monotonic() + 30
        while ws.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.view(ws, f"Stopped at frame {ws.frame}.")

    # ------------------------------------------------------------------ settings and outputs
    def apply_settings(self, request: gr.Request, *values: Any) -> str:
        """Apply the settings panel (the values of PANEL_SETTINGS, in order) to this tab; its objects and
        masks are kept. A tracker the app was started with gets its --checkpoint back."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            if ws.busy:
                raise InputError("tracking is running: press Stop first")
            new = ws.settings.updated(self._values(PANEL_SETTINGS, values))
            started = self.config.settings.tracker
            checkpoint = started.checkpoint if new.tracker.model == started.model else None
            new = new.updated({"tracker.checkpoint": checkpoint})
            changed = {k: v for k, v in new.flat().items() if ws.settings.get(k) != v}
            ws.settings = new
            if ws.session is not None:
                with ws.models_lock:
                    ws.session.update_settings(new)
            shown = {k: v for k, v in changed.items() if k != "tracker.checkpoint"}
            text = ("Settings applied: " + ", ".join(f"{k}={v}" for k, v in shown.items()) + "."
                    if shown else "Settings unchanged.")
            if "tracker.model" in changed and checkpoint is not None:
                text += f" {new.tracker.model} uses the checkpoint the app was started with."
            note = download_note(new.tracker.model, checkpoint)
            return messages.status_html(f"{text} {note}." if note else text)

    def outputs(self, formats: list[str] | None, request: gr.Request) -> tuple:
        """Write the run's outputs, and the chosen dataset exports; the overlay video for the page and the
        files to download."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock, self.heavy.job():
            s = ws.require_idle()
            paths = s.finalize(progress=False)
            files = [str(paths[name]) for name in DOWNLOADS if name in paths]
            covered = s.covered()
            status = (f"Wrote {len(files)} files for {frame_span(covered)} ({view.plural(len(covered), 'frame')}) "
                      f"and {view.plural(len(s.objects), 'object')}.")
            if formats:
                made, lines = exports.export_files(Path(s.out_dir), formats, Path(s.out_dir).parent / "exports")
                files += [str(p) for p in made]
                status += " Exported " + "; ".join(lines) + "."
            video = str(paths["overlay.mp4"]) if "overlay.mp4" in paths else None
            return video, files, messages.status_html(status)

    # ------------------------------------------------------------------ API-only (explicit coordinates)
    def objects(self, ws: Workspace) -> dict:
        s = ws.require_session()
        spans = ws.spans()
        return {"frame": ws.frame, "frames": len(s), "selected": ws.selected,
                "objects": [{"id": k, "label": o.label, "frame": o.frame, "first": spans.get(k, (None, None))[0],
                             "last": spans.get(k, (None, None))[1]} for k, o in sorted(s.objects.items())]}

    def api_click(self, frame: int, x: float, y: float, positive: bool = True, object_id: int = 0,
                  request: gr.Request = None) -> dict:
        """Click at pixel (x, y) of `frame`: on a new object (object_id 0) or refining object_id.
        Returns the object list and the clicked object's id and mask area on that frame."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            made = self.add_click(frame, x, y, positive, object_id, ws)
            return {**self.objects(ws), "object": made, "area": int((ws.session.mask(ws.frame) == made).sum())}

    def api_box(self, frame: int, x0: float, y0: float, x1: float, y1: float, object_id: int = 0,
                request: gr.Request = None) -> dict:
        """A box (x0, y0, x1, y1) on `frame`: a new object (object_id 0) or a new mask for object_id."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            made = self.add_box(frame, (x0, y0, x1, y1), object_id, ws)
            return {**self.objects(ws), "object": made, "area": int((ws.session.mask(ws.frame) == made).sum())}

    def api_objects(self, request: gr.Request = None) -> dict:
        """The objects of this session, the frame on screen and the number of frames."""
        ws = self.ws(request)
        with self.errors(ws), ws.lock:
            return self.objects(ws)

    def unload(self, request: gr.Request) -> None:
        """The tab closed: free its session and delete its files."""
        if request is not None and request.session_hash:
            key = request.session_hash
            if self.prefetch is not None and key in self.workspaces:
                self.prefetch.forget(self.workspaces.get(key))
            self.workspaces.drop(key)
