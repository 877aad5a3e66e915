"""Server-side speed of the web app: click to updated frame, and tracking with the live preview; and, in
a real browser, click to updated frame with and without the background encoder.

1. A click on an already embedded frame with full-size SAM ViT-B (random weights): the time from the
   click event to the updated frame, split into the handler (mask decode, object registry, overlay
   render, object list) and Gradio's image postprocess (JPEG encode + cache file). The first click on
   a frame also runs the image encoder; it is shown apart.
2. Tracking frames/s from frame 0 over ``--frames`` frames of blackswan (854×480), the app's streaming
   handler with every frame's preview rendered and encoded as Gradio would, against the engine loop
   `samtrack track` runs (Session.propagate), in alternating paired runs on the same session; and the
   preview's own work per frame (view + JPEG on the tracked masks) timed alone, as a share of a
   tracked frame: the steadier number on a busy machine.
3. ``prefetch`` (issue 25 item 3): headless chromium on two copies of the app, one with the background
   encoder and one without (``AppConfig.prefetch``), both on one model pool. Each trial types a frame
   number into the frame box, waits ``--thinks`` seconds (a person looking at the frame), clicks the
   swan and times the click until the page shows the new object on that frame; trials alternate
   between the two apps (and which goes first), and wait until no background encode runs before the
   frame is shown. ``long`` is 1.5 × the measured encoder time + 1 s: the frame was on screen long
   enough for its encode to finish.

    .venv/bin/python benchmarks/bench_app.py [--frames 20] [--clicks 5] [--repeats 2]
        [--trackers r50-deaotl deaot-t] [--threads N] [--parts click track prefetch]
        [--sam vit-b|tiny] [--thinks 0 2 long] [--trials 2]

Trackers are the official-format random-weight checkpoints in ../shared/fixtures/deaot (full size).
The machine may be shared: compare numbers only within one run (the fp32 and bf16 matmul peaks are
printed before and after).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_segmenter import sam_vit_b, segmenter
from machine import matmul_gflops, tiny_sam

from samtrack.app import AppConfig, build_app, launch
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
    """The app's model pool, with SAM ViT-B's architecture and random weights as the segmenter (fp32)."""

    def __init__(self) -> None:
        super().__init__()
        self.sam = None
        self._made = threading.Lock()

    def segmenter(self, settings: Settings):
        with self._made:
            if self.sam is None:
                self.sam = sam_vit_b()
        return segmenter(self.sam)


def frame_component(demo: gr.Blocks) -> gr.Image:
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "frame")


def bench_clicks(demo: gr.Blocks, request: gr.Request, clicks: int) -> None:
    h, image = demo.handlers, frame_component(demo)

    def click(x: float, y: float) -> tuple[float, float]:
        t = time.perf_counter()
        view = h.click("Positive click", None, None, gr.SelectData(None, {"index": [x, y], "value": None}), request)
        handler = time.perf_counter() - t
        t = time.perf_counter()
        image.postprocess(view[0]["value"])
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
        for view in h.track("forward", last, False, None, None, request):
            image.postprocess(view[0]["value"])
        return time.perf_counter() - t

    def preview_work() -> float:
        """Median seconds of one frame's preview alone (view + image postprocess), on the tracked masks."""
        ws = h.workspaces.get(request.session_hash)
        times = []
        for i in range(frames):
            ws.frame = i
            t = time.perf_counter()
            image.postprocess(h.view(ws, "", ids=session.mask(i))[0]["value"])
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    engine, app, preview = [], [], []
    for _ in range(repeats):
        engine.append(engine_loop())
        app.append(app_preview())
        preview.append(preview_work())
    return frames / statistics.median(engine), frames / statistics.median(app), statistics.median(preview)


def peaks() -> str:
    return f"fp32 {matmul_gflops():.0f} GFLOP/s, bf16 {matmul_gflops(dtype='bfloat16'):.0f} GFLOP/s (1024² matmul)"


def encoder_seconds(pool: ModelPool, settings: Settings) -> float:
    """One encoder pass of the pool's segmenter on a blackswan-sized frame (after a warm-up)."""
    import numpy as np

    seg = pool.segmenter(settings)
    rng = np.random.default_rng(0)
    seg.prepare(rng.integers(0, 255, (480, 854, 3), dtype=np.uint8))
    t = time.perf_counter()
    seg.prepare(rng.integers(0, 255, (480, 854, 3), dtype=np.uint8))
    return time.perf_counter() - t


def bench_prefetch(pool: ModelPool, settings: Settings, work: Path, thinks: list[str], trials: int,
                   model: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    encode = encoder_seconds(pool, settings)
    waits = {t: (1.5 * encode + 1 if t == "long" else float(t)) for t in thinks}
    print(f"encoder pass: {encode:.2f} s; think times: " + ", ".join(f"{t} = {w:.1f} s" for t, w in waits.items()))
    apps = {}
    for on in (False, True):
        demo = build_app(AppConfig(settings=settings, work_root=work / f"prefetch-{on}", prefetch=on), models=pool)
        apps[on] = (demo, launch(demo, block=False))
    expect.set_options(timeout=600_000)
    chromium = next(p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if Path(p).is_file())
    times: dict[tuple[str, bool], list[float]] = {(t, on): [] for t in thinks for on in (False, True)}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--disable-gpu"])
            pages = {}
            for on, (_, url) in apps.items():
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.locator("#upload input[type=file]").set_input_files(str(VIDEO))
                expect(page.locator("#status")).to_contain_text("Opened blackswan.mp4")
                pages[on] = page
                click_after(page, apps, 0, 0.0)  # loads the segmenter in this app's tab
            frame = 0
            for trial in range(trials):
                for think in thinks:
                    frame += 1
                    for on in (False, True) if trial % 2 == 0 else (True, False):
                        times[think, on].append(click_after(pages[on], apps, frame, waits[think]))
            browser.close()
    finally:
        for demo, _ in apps.values():
            demo.close()
            demo.handlers.close()
    print(f"\nClick → page shows the new object, blackswan 854×480, {model}, median of {trials} "
          "alternating trials (min–max):\n")
    print("| frame on screen before the click | without background encoding | with it | saved |")
    print("|---|---:|---:|---:|")
    for think in thinks:
        off, on = times[think, False], times[think, True]
        print(f"| {think} ({waits[think]:.1f} s) | {statistics.median(off):.2f} s ({min(off):.2f}–{max(off):.2f}) | "
              f"{statistics.median(on):.2f} s ({min(on):.2f}–{max(on):.2f}) | "
              f"{statistics.median(off) - statistics.median(on):+.2f} s |")


def click_after(page, apps: dict, frame: int, think: float) -> float:
    """Show `frame` (typed into the frame box), wait `think` s, click the swan; seconds until the page
    shows the new object."""
    from playwright.sync_api import expect

    for demo, _ in apps.values():  # nothing of the other app's runs meanwhile
        while demo.handlers.prefetch is not None and not demo.handlers.prefetch.idle:
            time.sleep(0.05)
    status = page.locator("#status")
    page.locator("#new-object").click()
    expect(status).to_contain_text("The next prompt makes a new object")
    box = page.locator("#slider input[type=number]")
    box.fill(str(frame))
    box.press("Enter")
    expect(status).to_contain_text(f"Frame {frame} of ")
    time.sleep(think)
    img = page.locator("#frame img")
    rect, (w, h) = img.bounding_box(), img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    x, y = CLICKS[0]
    t = time.perf_counter()
    page.mouse.click(rect["x"] + (x + 0.5) * rect["width"] / w, rect["y"] + (y + 0.5) * rect["height"] / h)
    expect(status).to_contain_text(f"click(s) on frame {frame}")
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trackers", nargs="+", default=["r50-deaotl", "deaot-t"], choices=sorted(DEAOT))
    parser.add_argument("--parts", nargs="+", default=["click", "track"], choices=["click", "track", "prefetch"])
    parser.add_argument("--sam", default="vit-b", choices=["vit-b", "tiny"],
                        help="prefetch: full-size random SAM ViT-B, or the tests' tiny random SAM")
    parser.add_argument("--thinks", nargs="+", default=["0", "2", "long"],
                        help="prefetch: seconds the frame is on screen before the click ('long': the encode fits)")
    parser.add_argument("--trials", type=int, default=2, help="prefetch: trials per think time and app")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 is steadier on a machine shared with other jobs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, matmul peaks "
          f"{peaks()}\n")
    pool = RandomSamPool()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-app-") as work:
        if "prefetch" in args.parts:
            tracker = args.trackers[0]
            settings = Settings().updated({"tracker.model": tracker, "tracker.checkpoint": str(DEAOT[tracker])})
            if args.sam == "tiny":
                settings = settings.updated({"segmenter.model": tiny_sam(Path(work)), "precision": "fp32"})
            model = "SAM ViT-B (full size, random weights, fp32)" if args.sam == "vit-b" else "tiny random SAM"
            bench_prefetch(pool if args.sam == "vit-b" else ModelPool(), settings, Path(work), args.thinks,
                           args.trials, model)
        for n, tracker in enumerate(args.trackers):
            settings = Settings().updated({"tracker.model": tracker, "tracker.checkpoint": str(DEAOT[tracker])})
            demo = build_app(AppConfig(settings=settings, work_root=Path(work) / tracker, prefetch=False), models=pool)
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
                demo.handlers.close()
        if rows:
            print(f"\nTracking blackswan frames 0-{args.frames - 1} (854×480, 1 object), median of {args.repeats} "
                  "alternating runs, full-size random weights:\n")
            print("| tracker | engine loop (`samtrack track`) | app, live preview of every frame | difference | "
                  "preview work per frame | its share of a tracked frame |")
            print("|---|---:|---:|---:|---:|---:|")
            for tracker, engine, app, preview in rows:
                print(f"| {tracker} | {engine:.2f} frames/s | {app:.2f} frames/s | {(engine / app - 1) * 100:+.1f}% | "
                      f"{preview * 1000:.0f} ms | {preview * engine * 100:.1f}% |")
    print(f"\nmatmul peaks after the runs: {peaks()}")


if __name__ == "__main__":
    main()
