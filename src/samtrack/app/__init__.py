"""`samtrack app`: the interactive web app (Gradio 6).

Modules: `layout` (the page and its wiring, API endpoints), `handlers` (what each action does),
`workspace` (per-browser-session state and files), `uploads` (limits, safe zip extraction), `view`
(frame rendering, object list), `messages` (what the page says: the user's words, escaped), `weights`
(what is on disk, what a tracker choice downloads), `examples` (example inputs), `exports` (dataset
exports to download), `prefetch` (the frame on screen encoded in the background), `gestures` (the
page's mouse and keyboard script).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before Gradio loads: no request leaves the machine

from samtrack.app.layout import build_app, launch
from samtrack.app.workspace import AppConfig

__all__ = ["AppConfig", "build_app", "launch"]
