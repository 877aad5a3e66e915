"""Server-side speed of the web app: click to updated frame, and tracking with the live preview.

1. A click on an already embedded frame with full-size SAM ViT-B (random weights): the time from the
   click event to the updated frame, split into the handler (mask decode, object registry, overlay
   render, object list) and Gradio's image postprocess (JPEG encode + cache file). The first click on
   a frame also runs the image encoder; it is shown apart.
2. Tracking frames/s from frame 0 over ``--frames`` frames of blackswan (854×480), the app's streaming
   handler with every frame's preview rendered and encoded as Gradio would, against the engine loop
   `samtrack track` runs (Session.propagate), in alternating paired runs on the same session; and the
   preview's own work per frame (view + JPEG on the tracked masks) timed alone, as a share of a
   tracked frame: the steadier number on a busy machine.

    .venv/bin/python benchmarks/bench_app.py [--frames 20] [--clicks 5] [--repeats 2]
        [--trackers r50-deaotl deaot-t] [--threads N] [--parts click track]

Trackers are the official-format random-weight checkpoints in ../shared/fixtures/deaot (full size).
The machine may be shared: compare numbers only within one run (the matmul peak is printed beside).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_segmenter import sam_vit_b, segmenter
from machine import matmul_gflops

from samtrack.app import AppConfig, build_app
from samtrack.io.masks import load_id_mask
from samtrack.models.pool import ModelPool
from samtrack.tracking.settings import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared"
VIDEO = SHARED / "data" / "videos" / "blackswan.mp4"
DEAOT = {"r50-deaotl": SHARED / "fixtures" / "deaot" / "r50_deaotl.pth",
         "deaot-t": SHARED / "fixtures" / "deaot" / "deaott.pth"}
SWAN_MASK = SHARED / "data" / "davis2016" / "Annotations" / "480p" / "blackswan" / "00000.png"
CLICKS = [(360, 300), (430, 210), (300, 330), (470, 260), (250, 300), (400, 350)]


class RandomSamPool(ModelPool):
    """The app's model pool, with SAM ViT-B's architecture and random weights as the segmenter."""

    def __init__(self) -> None:
        super().__init__()
        self.sam = None

    def segmenter(self, settings: Settings):
        if self.sam is None:
            self.sam = sam_vit_b()
        return segmenter(self.sam)


def frame_component(demo: gr.Blocks) -> gr.Image:
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "frame")


def bench_clicks(demo: gr.Blocks, request: gr.Request, clicks: int) -> None:
    h, image = demo.handlers, frame_component(demo)

    def click(x: float, y: float) -> tuple[float, float]:
        t = time.perf_counter()
        view = h.click("Positive click", gr.SelectData(None, {"index": [x, y], "value": None}), request)
        handler = time.perf_counter() - t
        t = time.perf_counter()
        image.postprocess(view[0])
        return handler, time.perf_counter() - t

    first = click(*CLICKS[0])
    times = [click(*xy) for xy in CLICKS[1: clicks + 1]]
    handler = statistics.median(t[0] for t in times)
    post = statistics.median(t[1] for t in times)
    print("| click | handler | image postprocess | click → updated frame |")
    print("|---|---:|---:|---:|")
    print(f"| first on the frame (image encoder runs) | {first[0] * 1000:.0f} ms | {first[1] * 1000:.0f} ms | "
          f"{sum(first) * 1000:.0f} ms |")
    print(f"| on the embedded frame (median of {len(times)}, refining one object) | {handler * 1000:.0f} ms | "
          f"{post * 1000:.0f} ms | {(handler + post) * 1000:.0f} ms |")


def bench_tracking(demo: gr.Blocks, request: gr.Request, frames: int,
                   repeats: int) -> tuple[float, float, float]:
    h, image = demo.handlers, frame_component(demo)
    session = h.workspaces.get(request.session_hash).session
    last = frames - 1

    def engine_loop() -> float:
        t = time.perf_counter()
        session.propagate(0, last)
        return time.perf_counter() - t

    def app_preview() -> float:
        h.goto(0, request)
        t = time.perf_counter()
        for view in h.track("forward", last, False, request):
            image.postprocess(view[0])
        return time.perf_counter() - t

    def preview_work() -> float:
        """Median seconds of one frame's preview alone (view + image postprocess), on the tracked masks."""
        ws = h.workspaces.get(request.session_hash)
        times = []
        for i in range(frames):
            ws.frame = i
            t = time.perf_counter()
            image.postprocess(h.view(ws, "", ids=session.mask(i))[0])
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    engine, app, preview = [], [], []
    for _ in range(repeats):
        engine.append(engine_loop())
        app.append(app_preview())
        preview.append(preview_work())
    return frames / statistics.median(engine), frames / statistics.median(app), statistics.median(preview)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trackers", nargs="+", default=["r50-deaotl", "deaot-t"], choices=sorted(DEAOT))
    parser.add_argument("--parts", nargs="+", default=["click", "track"], choices=["click", "track"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 is steadier on a machine shared with other jobs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, matmul peak "
          f"{matmul_gflops():.0f} GFLOP/s (fp32, 1024²)\n")
    pool = RandomSamPool()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-app-") as work:
        for n, tracker in enumerate(args.trackers):
            settings = Settings().updated({"tracker.model": tracker, "tracker.checkpoint": str(DEAOT[tracker])})
            demo = build_app(AppConfig(settings=settings, work_root=Path(work) / tracker), models=pool)
            request = gr.Request(session_hash=f"bench-{tracker}")
            try:
                demo.handlers.open_video(str(VIDEO), 0, request)
                if n == 0 and "click" in args.parts:
                    bench_clicks(demo, request, args.clicks)
                if "track" in args.parts:
                    session = demo.handlers.workspaces.get(request.session_hash).session
                    if not session.objects:  # the swan's ground-truth mask as the object to track
                        session.add_object(0, mask=load_id_mask(SWAN_MASK) > 0, label="swan")
                    rows.append((tracker, *bench_tracking(demo, request, args.frames, args.repeats)))
            finally:
                demo.handlers.workspaces.close()
        if rows:
            print(f"\nTracking blackswan frames 0-{args.frames - 1} (854×480, 1 object), median of {args.repeats} "
                  "alternating runs, full-size random weights:\n")
            print("| tracker | engine loop (`samtrack track`) | app, live preview of every frame | difference | "
                  "preview work per frame | its share of a tracked frame |")
            print("|---|---:|---:|---:|---:|---:|")
            for tracker, engine, app, preview in rows:
                print(f"| {tracker} | {engine:.2f} frames/s | {app:.2f} frames/s | {(engine / app - 1) * 100:+.1f}% | "
                      f"{preview * 1000:.0f} ms | {preview * engine * 100:.1f}% |")
    print(f"\nmatmul peak after the runs: {matmul_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
