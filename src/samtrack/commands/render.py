"""`samtrack render`: rebuild every output of a run from frames plus a folder of id-mask PNGs."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from samtrack.errors import InputError
from samtrack.io.masks import MAX_ID, load_id_mask
from samtrack.io.outputs import RunWriter
from samtrack.io.rundir import RunLock
from samtrack.io.sources import FrameSource, open_source


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "render", help="re-render overlay video/GIF, masks zip and RLE JSON from frames and id masks",
        description="Render a run directory from a frame source and a folder of id-mask PNGs (DAVIS "
                    "palette PNGs, or 0/255 binary masks), e.g. after editing masks by hand. Masks are "
                    "matched to frames by name (frame 00012.jpg or video frame 12 -> 00012.png). "
                    "Masks already copied into OUT and not changed since are reused, so an "
                    "interrupted render resumes where it stopped.")
    p.add_argument("frames", metavar="FRAMES",
                   help="a video file, a folder of .jpg/.png frames, or a DAVIS sequence folder")
    p.add_argument("masks", metavar="MASKS",
                   help="folder with one id-mask PNG per frame, named like the frames")
    p.add_argument("--out", "-o", required=True, type=Path, metavar="DIR",
                   help="run directory to write: masks/, overlay.mp4, overlay.gif, masks.zip, "
                        "masks_rle.json, objects.json, run.json")
    p.add_argument("--alpha", type=float, default=0.5,
                   help="opacity of the object colours, 0..1 (default: %(default)s)")
    p.add_argument("--no-contours", action="store_true", help="do not outline objects")
    p.add_argument("--labels", metavar="JSON",
                   help='object labels: inline JSON such as \'{"1": "swan"}\', or a JSON file with that '
                        "mapping (an objects.json from an earlier run works too)")
    p.add_argument("--draw-labels", action="store_true", help="write each object's label on the overlay")
    p.add_argument("--show-ids", action="store_true", help="write each object's id on the overlay")
    p.add_argument("--fps", type=float,
                   help="frame rate of the outputs (default: the video's own, 30 for image folders)")
    p.add_argument("--no-video", action="store_true", help="skip overlay.mp4")
    p.add_argument("--no-gif", action="store_true", help="skip overlay.gif")
    return p


def parse_labels(spec: str | None) -> dict[int, Any]:
    """Labels from inline JSON or a JSON file: {"1": "swan"} or {"1": {"label": "swan", ...}}."""
    if not spec:
        return {}
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else spec
        data = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f'--labels must be JSON like \'{{"1": "swan"}}\' or a JSON file: {exc}') from exc
    if not isinstance(data, dict):
        raise InputError('--labels must map object ids to labels, e.g. \'{"1": "swan"}\'')
    labels: dict[int, Any] = {}
    for key, value in data.items():
        if not str(key).isdigit() or not 1 <= int(key) <= MAX_ID:
            raise InputError(f"--labels: {key!r} is not an object id (1..{MAX_ID})")
        if not isinstance(value, (str, dict)):
            raise InputError(f"--labels: the label of object {key} must be a string")
        labels[int(key)] = value
    return labels


def _mask_files(source: FrameSource, masks_dir: Path) -> list[Path]:
    if not masks_dir.is_dir():
        raise InputError(f"mask folder not found: {masks_dir}")
    files = [masks_dir / f"{name}.png" for name in source.names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise InputError(f"{len(missing)} of {len(files)} frames have no mask in {masks_dir} (first missing: "
                         f"{', '.join(missing[:5])}); masks must be PNGs named like the frames")
    return files


def _copy_masks(run: RunWriter, files: list[Path], quiet: bool) -> tuple[int, int]:
    """Normalise the input masks into run/masks; return (written, reused)."""
    written = reused = 0
    for i, src in enumerate(tqdm(files, desc="masks", unit="frame", disable=quiet)):
        dst = run.mask_path(i)
        if dst.is_file() and dst.stat().st_mtime_ns >= src.stat().st_mtime_ns and run.is_done(i):
            reused += 1
            continue
        ids = load_id_mask(src)
        if ids.shape != (run.source.height, run.source.width):
            raise InputError(f"{src} is {ids.shape[1]}x{ids.shape[0]} but the frames are "
                             f"{run.source.width}x{run.source.height}; masks must match their frames")
        run.write_mask(i, ids)
        written += 1
    run.flush()
    return written, reused


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.alpha <= 1.0:
        raise InputError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.fps is not None and args.fps <= 0:
        raise InputError(f"--fps must be positive, got {args.fps}")
    labels = parse_labels(args.labels)
    started = time.perf_counter()
    with open_source(args.frames, fps=args.fps) as source:
        masks_dir = Path(args.masks)
        files = _mask_files(source, masks_dir)
        with RunLock.open(args.out), RunWriter(args.out, source, background=True) as run_dir:
            in_place = masks_dir.resolve() == run_dir.masks_dir.resolve()
            written, reused = (0, len(files)) if in_place else _copy_masks(run_dir, files, args.quiet)
            masks_s = time.perf_counter() - started
            outputs = run_dir.finalize(
                objects=labels,
                settings={"command": "render", "frames": str(args.frames), "masks": str(masks_dir),
                          "alpha": args.alpha, "contours": not args.no_contours,
                          "draw_labels": args.draw_labels, "show_ids": args.show_ids, "fps": source.fps},
                timings={"masks_s": round(masks_s, 3)},
                alpha=args.alpha, contours=not args.no_contours, draw_labels=args.draw_labels,
                show_ids=args.show_ids, video=not args.no_video, gif=not args.no_gif,
                progress=not args.quiet)
    if not args.quiet:
        total = time.perf_counter() - started
        print(f"rendered {len(files)} frames in {total:.1f} s ({len(files) / total:.1f} frames/s); "
              f"masks written {written}, reused {reused}")
        print(f"{args.out}: {', '.join(['masks/', *sorted(outputs)])}")
    return 0
