"""What every button, click and API call of the app does, on one browser tab's workspace.

Handlers take plain values (plus Gradio's request, which names the tab) and return the page's view:
the frame on screen with its masks, the frame slider, the object list, the object selector and a
status line. Errors a user can cause become `gr.Error` toasts and change nothing. Heavy work
(propagation, segment everything, text, audio, outputs) is queued one job at a time across users by
the layout; clicks stay on their own queue.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from samtrack.app import view
from samtrack.app.uploads import open_upload
from samtrack.app.workspace import AppConfig, Workspace, Workspaces
from samtrack.errors import InputError, SamtrackError
from samtrack.io.outputs import OUTPUT_FILES, RUN_JSON

NEW_OBJECT = 0  # the object selector's "new object" entry
DOWNLOADS = tuple(name for name in OUTPUT_FILES if name != RUN_JSON)  # what the Outputs tab offers
# Settings the panel edits, by dotted path (the rest come from the command line).
PANEL_SETTINGS = ("tracker.model", "sam_gap", "everything.points_per_side", "max_obj_num", "min_area",
                  "min_new_obj_iou", "tracker.long_term_mem_gap", "tracker.max_len_long_term", "precision")


@contextlib.contextmanager
def page_errors() -> Iterator[None]:
    """User-caused errors become one message on the page (and for API clients)."""
    try:
        yield
    except SamtrackError as exc:
        raise gr.Error(str(exc), print_exception=False) from exc


class Handlers:
    """The app's actions; one instance per app, shared by every tab."""

    def __init__(self, config: AppConfig, models: Any) -> None:
        self.config = config
        self.models = models  # ModelPool: loaded once, shared by every tab's session
        self.workspaces = Workspaces(config)

    def ws(self, request: gr.Request) -> Workspace:
        if request is None or not request.session_hash:
            raise gr.Error("no browser session")
        return self.workspaces.get(request.session_hash)

    # ------------------------------------------------------------------ the view
    def render(self, ws: Workspace, ids: np.ndarray | None = None) -> np.ndarray | None:
        s = ws.session
        if s is None:
            return None
        ids = s.mask(ws.frame) if ids is None else ids
        labels = {k: o.label for k, o in s.objects.items()}
        return view.frame_view(s.frame(ws.frame), ids, labels, ws.points, ws.labels, ws.corner)

    def view(self, ws: Workspace, status: str, ids: np.ndarray | None = None) -> tuple:
        """(frame image, frame slider, object list, object selector, status) for the page."""
        s = ws.session
        if s is None:
            return None, gr.update(value=0, maximum=1), view.objects_table({}, {}, None), \
                gr.update(choices=[("New object", NEW_OBJECT)], value=NEW_OBJECT), status
        choices = [("New object", NEW_OBJECT)] + [(f"{k} · {o.label}", k) for k, o in sorted(s.objects.items())]
        return (self.render(ws, ids), gr.update(value=ws.frame, maximum=max(len(s) - 1, 1)),
                view.objects_table(s.objects, ws.seen, ws.selected),
                gr.update(choices=choices, value=ws.selected or NEW_OBJECT), status)

    def _summary(self, ws: Workspace) -> str:
        s = ws.session
        return f"Frame {ws.frame} of {len(s) - 1} · {len(s.objects)} objects"

    def _goto(self, ws: Workspace, frame: int) -> None:
        s = ws.require_session()
        frame = int(frame)
        if not 0 <= frame < len(s):
            raise InputError(f"frame {frame} is outside the video (frames 0..{len(s) - 1})")
        if frame != ws.frame:
            ws.clear_prompt()
        ws.frame = frame

    def _note_frame(self, ws: Workspace) -> None:
        ids = ws.session.mask(ws.frame)
        ws.note(ws.frame, np.unique(ids[ids > 0]).tolist())

    # ------------------------------------------------------------------ input
    def open_video(self, upload: str | None, fps: float, request: gr.Request) -> tuple:
        """Open an uploaded video or zip of frames in this tab (replacing what it had open)."""
        from samtrack.tracking.session import Session

        ws = self.ws(request)
        if not upload:
            raise gr.Error("choose a video or a zip of frames to upload")
        with page_errors(), ws.lock:
            if ws.busy:
                raise InputError("tracking is running: press Stop first")
            ws.opened += 1
            folder = ws.folder / f"video-{ws.opened}"
            source = open_upload(upload, folder / "input", fps=fps, max_bytes=self.config.max_upload_bytes,
                                 max_frames=self.config.max_frames)
            previous = ws.session
            ws.close_session()
            if previous is not None:
                shutil.rmtree(Path(previous.out_dir).parent, ignore_errors=True)
            ws.session = Session(source, folder / "run", ws.settings, models=self.models)
            s = ws.session
            return self.view(ws, f"Opened a video of {len(s)} frames ({s.source.width}×{s.source.height}, "
                                 f"{s.source.fps:g} fps). Click on an object to segment it.")

    def open_example(self, request: gr.Request) -> tuple:
        """Open the bundled example clip (three moving shapes, generated on first use)."""
        from samtrack.io.synthetic import make_clip

        clip = self.workspaces.root / "example" / "example.mp4"
        if not clip.exists():
            make_clip(clip.with_name("tmp.mp4"), seconds=2.0).rename(clip)
        return self.open_video(str(clip), 0, request)

    # ------------------------------------------------------------------ navigation
    def goto(self, frame: float, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with page_errors(), ws.lock:
            self._goto(ws, int(frame))
            return self.view(ws, self._summary(ws))

    def previous(self, request: gr.Request) -> tuple:
        return self._step(-1, request)

    def next(self, request: gr.Request) -> tuple:
        return self._step(1, request)

    def _step(self, delta: int, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_session()
            self._goto(ws, min(max(ws.frame + delta, 0), len(s) - 1))
            return self.view(ws, self._summary(ws))

    # ------------------------------------------------------------------ objects
    def select_object(self, obj_id: int | None, request: gr.Request) -> tuple:
        """Choose the object later prompts refine (0: the next prompt makes a new object)."""
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_session()
            chosen = int(obj_id or 0) or None
            if chosen != ws.selected:
                ws.clear_prompt()
            ws.selected = chosen if chosen in s.objects else None
            what = f"object {ws.selected}" if ws.selected else "a new object"
            return self.view(ws, f"Prompts now make or refine {what}.")

    def relabel(self, label: str, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_idle()
            if ws.selected is None:
                raise InputError("select an object to relabel")
            if not label.strip():
                raise InputError("type the new label first")
            s.relabel(ws.selected, label.strip())
            return self.view(ws, f"Object {ws.selected} is now {label.strip()!r}.")

    def delete(self, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_idle()
            if ws.selected is None:
                raise InputError("select an object to delete")
            gone = ws.selected
            s.remove_object(gone)
            ws.seen.pop(gone, None)
            ws.selected = None
            ws.clear_prompt()
            return self.view(ws, f"Deleted object {gone} from every frame.")

    def undo(self, request: gr.Request) -> tuple:
        return self._history(request, redo=False)

    def redo(self, request: gr.Request) -> tuple:
        return self._history(request, redo=True)

    def _history(self, request: gr.Request, *, redo: bool) -> tuple:
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_idle()
            name = s.redo() if redo else s.undo()
            ws.clear_prompt()
            if ws.selected not in s.objects:
                ws.selected = None
            word = "Redid" if redo else "Undid"
            return self.view(ws, f"{word}: {name}." if name else f"Nothing to {word.lower()[:-1]}.")

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
        made = s.add_object(ws.frame, points=points, labels=labels, obj_id=selected)
        ws.selected, ws.points, ws.labels, ws.corner = made, points, labels, None
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
        made = s.add_object(ws.frame, box=box, obj_id=int(obj_id) if obj_id else None)
        ws.clear_prompt()
        ws.selected = made
        self._note_frame(ws)
        return made

    def click(self, mode: str, evt: gr.SelectData, request: gr.Request) -> tuple:
        """A click on the frame image: positive/negative click, or one corner of a box."""
        ws = self.ws(request)
        x, y = (float(v) for v in evt.index[:2])
        with page_errors(), ws.lock:
            ws.require_idle()
            if mode == "Box":
                if ws.corner is None:
                    ws.points, ws.labels, ws.corner = [], [], (x, y)
                    return self.view(ws, "Box: now click the opposite corner.")
                made = self.add_box(ws.frame, (*ws.corner, x, y), ws.selected, ws)
                return self.view(ws, f"Box → object {made}.")
            started = time.perf_counter()
            made = self.add_click(ws.frame, x, y, mode != "Negative click", ws.selected, ws)
            ms = (time.perf_counter() - started) * 1000
            return self.view(ws, f"Object {made}: {len(ws.points)} click(s) on frame {ws.frame} ({ms:.0f} ms).")

    def gesture(self, data: str, request: gr.Request) -> tuple:
        """A gesture from the page's script: {"kind": "negative", "point": [x, y]} (right click) or
        {"kind": "box", "box": [x0, y0, x1, y1]} (drag), on the frame on screen."""
        ws = self.ws(request)
        try:
            event = json.loads(data)
            kind = event["kind"]
            values = [float(v) for v in event["point" if kind == "negative" else "box"]]
        except (ValueError, KeyError, TypeError):
            raise gr.Error(f"unknown gesture {data!r}") from None
        with page_errors(), ws.lock:
            if kind == "negative":
                made = self.add_click(ws.frame, *values[:2], False, ws.selected, ws)
                return self.view(ws, f"Object {made}: {len(ws.points)} click(s) on frame {ws.frame}.")
            made = self.add_box(ws.frame, tuple(values[:4]), ws.selected, ws)
            return self.view(ws, f"Box → object {made}.")

    def new_object(self, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with page_errors(), ws.lock:
            ws.require_session()
            ws.selected = None
            ws.clear_prompt()
            return self.view(ws, "The next prompt makes a new object.")

    def brush_frame(self, request: gr.Request) -> dict:
        """The frame on screen as the brush editor's background."""
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_session()
            return {"background": s.frame(ws.frame), "layers": [], "composite": None}

    def brush(self, editor: dict | None, request: gr.Request) -> tuple:
        """A brush stroke (painted on the editor's layer) as a prompt: its box, with points along it."""
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_idle()
            layers = (editor or {}).get("layers") or []
            if not layers or layers[0] is None:
                raise InputError("paint a stroke over the object first")
            layer = np.asarray(layers[0])
            painted = layer[..., 3] > 0 if layer.ndim == 3 and layer.shape[2] == 4 else layer.any(axis=-1)
            if painted.shape != (s.source.height, s.source.width):
                raise InputError("the brush canvas does not match this frame: press 'Brush on this frame' again")
            points = view.stroke_points(painted)
            if not points:
                raise InputError("paint a stroke over the object first")
            made = s.add_object(ws.frame, stroke=points, obj_id=ws.selected)
            ws.clear_prompt()
            ws.selected = made
            self._note_frame(ws)
            return self.view(ws, f"Stroke → object {made}.")

    def everything(self, request: gr.Request) -> tuple:
        """Segment everything on the frame; new segments become objects, listed for keep or drop."""
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_idle()
            ws.clear_prompt()
            ws.segments = s.segment_everything(ws.frame)
            self._note_frame(ws)
            keep = gr.update(choices=[(f"{k} · {s.objects[k].label}", k) for k in ws.segments], value=ws.segments)
            return (*self.view(ws, f"Segment everything found {len(ws.segments)} new objects: untick the ones "
                                   "to drop, then Apply."), keep)

    def keep_segments(self, kept: list[int] | None, request: gr.Request) -> tuple:
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_idle()
            drop = [k for k in ws.segments if k not in set(kept or []) and k in s.objects]
            for obj_id in drop:
                s.remove_object(obj_id)
                ws.seen.pop(obj_id, None)
            ws.segments = []
            return (*self.view(ws, f"Kept {len(kept or [])} segments, dropped {len(drop)}."),
                    gr.update(choices=[], value=[]))

    def text(self, caption: str, box_threshold: float, text_threshold: float, request: gr.Request) -> tuple:
        """Objects named by a caption (Grounding DINO boxes cut by SAM) on the frame."""
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_idle()
            if not caption.strip():
                raise InputError('type what to find, e.g. "swan. duck"')
            thresholds = {"detector.box_threshold": box_threshold, "detector.text_threshold": text_threshold}
            ws.settings = ws.settings.updated(thresholds)
            s.update_settings(s.settings.updated(thresholds))
            ws.clear_prompt()
            added = s.add_objects_from_text(ws.frame, caption)
            self._note_frame(ws)
            return self.view(ws, f"{caption!r}: {len(added)} new objects {added}.")

    def sounds(self, request: gr.Request) -> tuple:
        """The soundtrack's AudioSet labels with probabilities, to pick from."""
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_idle()
            found = s.sounds()
            if not found:
                raise InputError("no sound label is above the audio threshold")
            choices = [(f"{label} ({p:.2f})", label) for label, p in found]
            return gr.update(choices=choices, value=found[0][0]), f"Sounds: {', '.join(c for c, _ in choices)}."

    def ground_sound(self, label: str | None, box_threshold: float, text_threshold: float,
                     request: gr.Request) -> tuple:
        if not label:
            raise gr.Error("press 'Listen' and pick a sound first")
        return self.text(label, box_threshold, text_threshold, request)

    # ------------------------------------------------------------------ tracking
    def track(self, direction: str, end: float | None, discover: bool, request: gr.Request,
              progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:  # noqa: B008 - Gradio's injection idiom
        """Propagate from the frame on screen, showing each frame as it is tracked; Stop ends it."""
        from samtrack.tracking import Cancelled

        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_idle()
            ws.busy = True
            ws.clear_prompt()
        start, backward = ws.frame, direction == "backward"
        last = (0 if backward else len(s) - 1) if end is None or end < 0 else int(end)
        total = abs(last - start) + 1
        done, status, frames = 0, "", None
        started = time.perf_counter()
        try:
            with page_errors():
                frames = s.iter_propagate(start, last, direction="backward" if backward else "forward",
                                          discover=bool(discover))
                for r in frames:
                    done += 1
                    ws.frame = r.index
                    ws.note(r.index, r.objects)
                    progress((done, total), desc="tracking")
                    rate = done / (time.perf_counter() - started)
                    yield self.view(ws, f"Tracking {direction}: frame {r.index} ({done}/{total}, "
                                        f"{rate:.2f} frames/s)", ids=r.ids)
            status = f"Tracked {done} frames {direction} from frame {start}."
        except Cancelled:
            status = f"Stopped at frame {ws.frame} after {done} frames."
        finally:
            if frames is not None:
                frames.close()
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
        with page_errors(), ws.lock:
            if ws.busy:
                raise InputError("tracking is running: press Stop first")
            if len(values) != len(PANEL_SETTINGS):
                raise InputError(f"the settings panel has {len(PANEL_SETTINGS)} values, got {len(values)}")
            new = ws.settings.updated(dict(zip(PANEL_SETTINGS, values, strict=True)))
            started = self.config.settings.tracker
            checkpoint = started.checkpoint if new.tracker.model == started.model else None
            new = new.updated({"tracker.checkpoint": checkpoint})
            changed = {k: v for k, v in new.flat().items() if ws.settings.get(k) != v}
            ws.settings = new
            if ws.session is not None:
                ws.session.update_settings(new)
            if not changed:
                return "Settings unchanged."
            return "Settings applied: " + ", ".join(f"{k}={v}" for k, v in changed.items())

    def outputs(self, request: gr.Request) -> tuple:
        """Write the run's outputs; the overlay video for the page and the files to download."""
        ws = self.ws(request)
        with page_errors(), ws.lock:
            s = ws.require_idle()
            paths = s.finalize(progress=False)
            files = [str(paths[name]) for name in DOWNLOADS if name in paths]
            video = str(paths["overlay.mp4"]) if "overlay.mp4" in paths else None
            return video, files, f"Wrote {len(files)} files for {len(s)} frames and {len(s.objects)} objects."

    # ------------------------------------------------------------------ API-only (explicit coordinates)
    def objects(self, ws: Workspace) -> dict:
        s = ws.require_session()
        return {"frame": ws.frame, "frames": len(s), "selected": ws.selected,
                "objects": [{"id": k, "label": o.label, "frame": o.frame,
                             "first": ws.seen.get(k, [o.frame])[0], "last": ws.seen.get(k, [o.frame, o.frame])[1]}
                            for k, o in sorted(s.objects.items())]}

    def api_click(self, frame: int, x: float, y: float, positive: bool = True, object_id: int = 0,
                  request: gr.Request = None) -> dict:
        """Click at pixel (x, y) of `frame`: on a new object (object_id 0) or refining object_id.
        Returns the object list and the clicked object's id and mask area on that frame."""
        ws = self.ws(request)
        with page_errors(), ws.lock:
            made = self.add_click(frame, x, y, positive, object_id, ws)
            return {**self.objects(ws), "object": made, "area": int((ws.session.mask(ws.frame) == made).sum())}

    def api_box(self, frame: int, x0: float, y0: float, x1: float, y1: float, object_id: int = 0,
                request: gr.Request = None) -> dict:
        """A box (x0, y0, x1, y1) on `frame`: a new object (object_id 0) or a new mask for object_id."""
        ws = self.ws(request)
        with page_errors(), ws.lock:
            made = self.add_box(frame, (x0, y0, x1, y1), object_id, ws)
            return {**self.objects(ws), "object": made, "area": int((ws.session.mask(ws.frame) == made).sum())}

    def api_objects(self, request: gr.Request = None) -> dict:
        """The objects of this session, the frame on screen and the number of frames."""
        ws = self.ws(request)
        with page_errors(), ws.lock:
            return self.objects(ws)

    def unload(self, request: gr.Request) -> None:
        """The tab closed: free its session and delete its files."""
        if request is not None and request.session_hash:
            self.workspaces.drop(request.session_hash)
