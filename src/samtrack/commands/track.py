"""`samtrack track INPUT`: segment and track objects in a video or image sequence."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from samtrack.tracking import prompts as P
from samtrack.tracking import settings
from samtrack.tracking.job import TrackJob


class _Ordered(argparse.Action):
    """Keeps --frame/--object/--click/--box/--stroke/--text in the order given, so clicks group by object."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, "prompt_items", None) or []
        items.append((self.dest, values))
        namespace.prompt_items = items


def _floats(text: str, n: tuple[int, ...], what: str) -> list[float]:
    try:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) not in n:
            raise ValueError
        return [float(p) if p not in ("neg", "pos") else p for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must look like {'X,Y[,neg]' if what == 'click' else 'X0,Y0,X1,Y1'}"
                                         f", got {text!r}") from None


def _stroke(text: str) -> list[list[float]]:
    try:
        points = [[float(v) for v in pair.split(",")] for pair in text.split(";") if pair.strip()]
        if not points or any(len(p) != 2 for p in points):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"stroke must look like X,Y;X,Y;..., got {text!r}") from None
    return points


def _object_id(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 255:
        raise argparse.ArgumentTypeError(f"an object id is a whole number in 1..255, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "track", help="segment and track objects through a video or image folder",
        description="Segment objects on key frames (clicks, boxes, strokes, a prompts file, or automatically "
                    "with segment-everything) and track them with stable ids through the whole input. Writes "
                    "masks/, overlay.mp4, overlay.gif, masks.zip, masks_rle.json, objects.json and run.json.")
    p.add_argument("input", help="video file (mp4, mov, avi, mkv, webm) or folder of frames (jpg/png)")
    p.add_argument("--out", "-o",
                   help="run directory to write (default: runs/<input name>, or runs/<input name>-2, -3 ... when "
                        "that exists; with --resume, the newest of them)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out, up to its last frame (give the command that made it); "
                        "a finished run is left as it is")
    p.add_argument("--allow-changes", action="store_true",
                   help="with --resume: continue with other settings, prompts on frames not tracked yet or "
                        "another --end (without it, a resume that changes them is refused)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out that holds no samtrack run (its samtrack outputs are "
                        "replaced, other files kept)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a sentence")
    add_options(p)
    return p


def add_options(p: argparse.ArgumentParser) -> None:
    """Every option of a track job but its input and output (`samtrack batch` takes them all)."""
    mode = p.add_argument_group("what to track (give --auto, or prompts)")
    mode.add_argument("--auto", action="store_true",
                      help="SAM-Track's automatic mode: segment everything (or, with --text, detect those categories) "
                           "on frame 0 and every --sam-gap frames, new objects join with fresh ids; with --text and "
                           "--tracker sam3 it is SAM 3's own detect-and-track on every frame (--sam-gap does not "
                           "apply, no detector or segmenter loads)")
    mode.add_argument("--frame", type=int, action=_Ordered, dest="frame", metavar="N",
                      help="frame the following prompts apply to (default 0); may be given several times")
    mode.add_argument("--object", nargs="?", const="", action=_Ordered, dest="object", metavar="LABEL",
                      help="start a new object (optionally labelled): the following --click options, or the next "
                           "--box or --stroke, cut it")
    mode.add_argument("--object-id", action=_Ordered, dest="object_id", metavar="N", type=_object_id,
                      help="give object N (numbered from 1 in the order objects are prompted) a new mask on the "
                           "current --frame: the following --click options, or the next --box or --stroke, cut it")
    mode.add_argument("--click", action=_Ordered, dest="click", metavar="X,Y[,neg]",
                      type=lambda t: _floats(t, (2, 3), "click"),
                      help="a click on the current object: positive, or negative with ',neg'")
    mode.add_argument("--box", action=_Ordered, dest="box", metavar="X0,Y0,X1,Y1",
                      type=lambda t: _floats(t, (4,), "box"),
                      help="a box around the object --object / --object-id named, or a new one")
    mode.add_argument("--stroke", action=_Ordered, dest="stroke", metavar="X,Y;X,Y;...", type=_stroke,
                      help="a brush stroke over the object --object / --object-id named, or a new one, as points; "
                           "SAM-Track prompts with its box")
    mode.add_argument("--text", action=_Ordered, dest="text", metavar="CAPTION",
                      help='objects named by text ("swan. duck"), found with Grounding DINO on the current frame; '
                           "with --auto, the categories detected on every key frame instead of segment-everything")
    mode.add_argument("--audio", action="store_true",
                      help="ground the sounds of the soundtrack (AST AudioSet labels above --audio-threshold among "
                           "the top --label-num) as text, on the first prompt frame; with --auto, detect them on "
                           "every key frame")
    mode.add_argument("--discover", nargs="?", const="", metavar="CATEGORIES",
                      help="with prompts: every --sam-gap frames also add the objects segment-everything finds "
                           "(or, given CATEGORIES like \"swan. duck\", those Grounding DINO detects) that are not "
                           "tracked yet (SAM-Track's Start Tracking after clicks, boxes or text)")
    mode.add_argument("--prompts", metavar="FILE",
                      help="JSON or YAML list of prompts, each {frame, id?, label?, points+labels | box | stroke "
                           "| mask: PNG path | text} (id: a new mask for an earlier prompt's object)")
    mode.add_argument("--init-from", dest="init_from", metavar="FILE",
                      help="objects from annotations: a COCO .json file or a folder of id-mask PNGs named like the "
                           "frames (DAVIS style); each object starts from its mask on its first annotated frame, "
                           "labelled with its category")
    mode.add_argument("--backward", action="store_true",
                      help="also carry objects added after the first frame back towards it (--start, or 0)")
    settings.add_options(p)
    out = p.add_argument_group("frames and outputs")
    out.add_argument("--start", type=int, default=None,
                     help="first frame to process: --auto starts there, prompts may not come before it, --backward "
                          "stops there (default: 0)")
    out.add_argument("--end", type=int, default=None, help="last frame to track (default: the last)")
    out.add_argument("--fps", type=_positive_float, default=None,
                     help="frame rate of an image-folder input, for overlay.mp4/gif (default 30; videos keep theirs)")
    out.add_argument("--no-video", action="store_true", help="skip overlay.mp4")
    out.add_argument("--no-gif", action="store_true", help="skip overlay.gif")
    out.add_argument("--export", action="append", default=[], choices=("coco", "yolo", "cvat", "davis", "ytvos"),
                     metavar="FORMAT", help="also export the finished run to <out>/exports/ as coco, yolo, cvat, "
                     "davis or ytvos (may be given several times; see `samtrack export`)")


def job_from_args(args: argparse.Namespace, input: str | None = None, out: str | None = None) -> TrackJob:
    """The job `samtrack track` runs for these arguments (`samtrack batch` builds its base job here too,
    with its own `input` and `out`)."""
    prompts = P.group_cli_items(getattr(args, "prompt_items", None) or [])
    if args.prompts:
        prompts = P.merge(prompts, P.parse_prompt_file(args.prompts))
    input = str(args.input if input is None else input)
    out = out or args.out or str(default_out(input, getattr(args, "resume", False)))
    return TrackJob.build(input, str(out), settings.from_args(args), prompts, auto=args.auto, discover=args.discover,
                          audio=args.audio, backward=args.backward, start=args.start, end=args.end, fps=args.fps,
                          video=not args.no_video, gif=not args.no_gif, resume=getattr(args, "resume", False),
                          force=getattr(args, "force", False), allow_changes=getattr(args, "allow_changes", False),
                          init_from=getattr(args, "init_from", None), exports=tuple(dict.fromkeys(args.export)))


def default_out(input: str, resume: bool) -> Path:
    """runs/<input name> (SAM-Track writes tracking_results/<video>), or the next free runs/<name>-N; with
    `resume`, the newest that exists."""
    name = Path(input.rstrip("/\\")).stem or "run"
    candidates = [Path("runs") / name] + [Path("runs") / f"{name}-{n}" for n in range(2, 1000)]
    existing = [c for c in candidates if c.exists()]
    if resume:
        return existing[-1] if existing else candidates[0]
    return next(c for c in candidates if not c.exists())


class _Bars:
    """One progress bar per pass (forward, backward), made when its first frame is done."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.bar, self.direction = quiet, None, None

    def __call__(self, done: int, total: int, info: dict) -> None:
        from tqdm import tqdm

        if self.quiet:
            return
        if self.bar is None or info.get("direction") != self.direction or done < self.bar.n:
            self.close()
            self.direction = info.get("direction")
            self.bar = tqdm(total=total, unit="frame", desc=f"tracking {self.direction or 'forward'}",
                            dynamic_ncols=True)
        self.bar.total, self.bar.n = total, done
        self.bar.set_postfix(objects=info["objects"], refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    job = job_from_args(args)
    bars = _Bars(args.quiet)
    try:
        result = job.run(progress=bars, log=None if args.quiet else print, tracked=bars.close,
                         render_progress=not args.quiet)
    finally:
        bars.close()
    if args.json:
        print(json.dumps(result))
    elif result["note"]:
        print(f"samtrack: {result['note']}")
    else:
        span = f"frames {result['first']}-{result['last']}" if result["tracked"] else "no frame"
        n, objects = result["objects"], "object" if result["objects"] == 1 else "objects"
        print(f"Tracked {result['tracked']} frames ({span} of {result['frames']}) with {n} {objects} "
              f"in {result['seconds']:.1f} s; masks and outputs are in {result['out']}")
    return 0
