"""`samtrack app`: the interactive web app (Gradio 6).

Modules: `layout` (the page and its wiring, API endpoints), `handlers` (what each action does),
`workspace` (per-browser-session state and files), `uploads` (limits, safe zip extraction), `view`
(frame rendering, object list).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before Gradio loads: no request leaves the machine

from samtrack.app.layout import build_app, launch
from samtrack.app.workspace import AppConfig

__all__ = ["AppConfig", "build_app", "launch"]
