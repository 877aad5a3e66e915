"""`samtrack app`: serve the interactive web app on this machine."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
from pathlib import Path

from samtrack.errors import PromptError
from samtrack.tracking import settings


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "app", help="the interactive web app: click objects, track, fix any frame, download",
        description="Serve the web app (Gradio) on this machine: upload a video, prompt objects with clicks, "
                    "boxes, brush strokes, text or sound on any frame, track them with a live preview, roll back "
                    "and fix, download masks and overlays. Binds 127.0.0.1 unless --host says otherwise; no "
                    "share links, no analytics.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860, help="port (0: any free port)")
    p.add_argument("--max-upload", default="2gb", help="largest upload (e.g. 500mb, 2gb)")
    p.add_argument("--max-frames", type=int, default=10_000, help="longest video accepted, in frames")
    p.add_argument("--examples", type=Path, metavar="DIR",
                   help="a folder of example videos and zips of frames the page offers besides the synthetic clip "
                        "(default: $SAMTRACK_EXAMPLES, else ~/.cache/samtrack/examples when it exists)")
    settings.add_options(p)
    return p


def _stop_on_sigterm() -> None:
    """SIGTERM (`kill`, systemd, docker stop) ends the app as Ctrl-C does, so its files are removed."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run(args: argparse.Namespace) -> int:
    if args.max_frames < 1:
        raise PromptError(f"--max-frames must be >= 1, got {args.max_frames}")
    _stop_on_sigterm()
    # One folder for everything the app writes: the tabs' work and Gradio's upload cache; removed on exit.
    root = Path(tempfile.mkdtemp(prefix="samtrack-app-"))
    try:
        # Both before gradio is imported (it reads them then): nothing leaves the machine, and Gradio's
        # cache is the app's own folder.
        os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
        os.environ["GRADIO_TEMP_DIR"] = str(root / "uploads")
        from samtrack.app import AppConfig, build_app, launch
        from samtrack.app.uploads import parse_size

        config = AppConfig(settings=settings.from_args(args), max_upload_bytes=parse_size(args.max_upload),
                           max_frames=args.max_frames, work_root=root / "work", upload_cache=root / "uploads",
                           examples=args.examples)
        demo = build_app(config)
        try:
            print(f"samtrack app: http://{args.host}:{args.port or '<any free port>'} (Ctrl-C stops it)", flush=True)
            launch(demo, args.host, args.port or None, block=True)
        finally:
            demo.handlers.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0
