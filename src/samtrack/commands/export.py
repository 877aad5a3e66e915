"""`samtrack export RUN_DIR --format FORMAT --out PATH`: a run as COCO, YOLO, CVAT, DAVIS or YouTube-VOS."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from samtrack.errors import InputError
from samtrack.io.export import FORMATS, export_run, parse_classes


def _classes(text: str) -> dict[int, str]:
    try:
        return parse_classes(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="write a finished run as a COCO, YOLO, CVAT, DAVIS or YouTube-VOS dataset",
        description="Write the masks of a finished run in a format annotation tools and trainers read. "
                    "coco: one instance-segmentation .json (RLE masks, or --polygons; --with-frames writes the "
                    "frames to images/ beside it). yolo: a folder with images/, labels/ (one normalised polygon "
                    "per object and frame) and data.yaml. cvat: one CVAT for video 1.1 .xml with a polygon track "
                    "per object. davis, ytvos: a folder with JPEGImages/<sequence>/ and Annotations/<sequence>/ "
                    "palette PNGs (ytvos adds meta.json). Objects' labels become categories (unlabelled objects: "
                    "'object'); frames the run does not cover are left out.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="the run: the --out folder of `samtrack track`, `samtrack render` or the app")
    p.add_argument("--format", "-f", required=True, choices=FORMATS, dest="fmt", metavar="FORMAT",
                   help=f"one of {', '.join(FORMATS)}")
    p.add_argument("--out", "-o", required=True, type=Path, metavar="PATH",
                   help="a .json file (coco), a .xml file (cvat), or a folder (yolo, davis, ytvos)")
    p.add_argument("--polygons", action="store_true",
                   help="coco: outlines as polygons (one per part, holes joined in) instead of RLE masks")
    p.add_argument("--with-frames", action="store_true",
                   help="coco: also write the frames to an images/ folder beside the .json")
    p.add_argument("--classes", metavar="SPEC", type=_classes,
                   help='class names for object ids, overriding their labels: 1=swan,2=duck, or a JSON file '
                        'like {"1": "swan"} (an objects.json works too)')
    p.add_argument("--force", action="store_true", help="replace an existing --out (and images/)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    summary = export_run(args.run_dir, args.fmt, args.out, polygons=args.polygons, with_frames=args.with_frames,
                         classes=args.classes, force=args.force, progress=not args.quiet)
    print(json.dumps(summary.to_dict()) if args.json else summary.line())
    return 0
