"""`samtrack render`: rebuild every output of a run from frames plus a folder of id-mask PNGs."""

from __future__ import annotations

import argparse
import json
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from tqdm import tqdm

from samtrack.errors import InputError, OutputError, PromptError, SamtrackError
from samtrack.io.atomic import DISK_FULL
from samtrack.io.masks import MAX_ID, load_id_mask
from samtrack.io.outputs import MASKS_DIR, RunWriter
from samtrack.io.renderrecord import RenderRecord, file_sha256
from samtrack.io.rundir import RunLock, input_identity
from samtrack.io.sources import FrameSource, open_source
from samtrack.tracking.runrecord import OUTPUT_FILES, SESSION_FILE, discard_if_empty, remove_outputs


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "render", help="re-render overlay video/GIF, masks zip and RLE JSON from frames and id masks",
        description="Render a run directory from a frame source and a folder of id-mask PNGs (DAVIS "
                    "palette PNGs, or 0/255 binary masks), e.g. after editing masks by hand. Masks are "
                    "matched to frames by name (frame 00012.jpg or video frame 12 -> 00012.png). "
                    "Masks this render wrote into OUT before, from masks of the same content, are reused "
                    "(render.json records them), so an interrupted render resumes where it stopped. OUT may "
                    "not hold a track run, a render of other frames or samtrack outputs of unknown origin "
                    "unless --force.")
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
    p.add_argument("--covered", action="store_true",
                   help="render only the frames that have a mask (e.g. those a partial run covers); the outputs "
                        "and run.json say which")
    p.add_argument("--no-video", action="store_true", help="skip overlay.mp4")
    p.add_argument("--no-gif", action="store_true", help="skip overlay.gif")
    p.add_argument("--force", action="store_true",
                   help="render into an OUT that holds a track run, a render of other frames or samtrack outputs "
                        "of unknown origin: their records, masks and outputs are replaced, other files kept")
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
        raise PromptError(f'--labels must be JSON like \'{{"1": "swan"}}\' or a JSON file: {exc}') from exc
    if not isinstance(data, dict):
        raise PromptError('--labels must map object ids to labels, e.g. \'{"1": "swan"}\'')
    labels: dict[int, Any] = {}
    for key, value in data.items():
        if not str(key).isdigit() or not 1 <= int(key) <= MAX_ID:
            raise PromptError(f"--labels: {key!r} is not an object id (1..{MAX_ID})")
        if not isinstance(value, (str, dict)):
            raise PromptError(f"--labels: the label of object {key} must be a string")
        labels[int(key)] = value
    return labels


def _mask_files(source: FrameSource, masks_dir: Path, covered: bool) -> list[tuple[int, Path]]:
    """(frame index, mask file) of every frame; with `covered`, of the frames that have a mask."""
    if not masks_dir.is_dir():
        raise InputError(f"mask folder not found: {masks_dir}")
    files = [(i, masks_dir / f"{name}.png") for i, name in enumerate(source.names)]
    present = [(i, f) for i, f in files if f.is_file()]
    if covered:
        if not present:
            raise InputError(f"no frame has a mask in {masks_dir}; masks must be PNGs named like the frames")
        return present
    missing = [f.name for _, f in files if not f.is_file()]
    if missing:
        raise InputError(f"{len(missing)} of {len(files)} frames have no mask in {masks_dir} (first missing: "
                         f"{', '.join(missing[:5])}); masks must be PNGs named like the frames (render only the "
                         "frames that have one, e.g. those a partial run covers, with --covered)")
    return files


def _claim(out: Path, identity: dict, *, force: bool, in_place: bool) -> RenderRecord:
    """What this render may reuse in `out`: the record of an earlier render of the same frames, or a new one.

    Refuses (unless `force`) a directory holding a track run, a render of other frames, or samtrack outputs
    no render recorded; with `force` their records, outputs and masks (unless they are this render's
    input) are removed first, other files are kept.
    """
    try:
        record = RenderRecord.read(out)
        problem = record.input_problem(identity) if record is not None else None
    except OutputError as exc:
        record, problem = None, str(exc)
    if (out / SESSION_FILE).exists():
        problem = (f"{out} holds a samtrack track run ({SESSION_FILE}); choose another output directory, or pass "
                   "--force to replace its masks and outputs with this render (other files are kept)")
    elif problem is not None and record is not None:
        problem = (f"{out} holds a render of other frames ({problem}); choose another output directory, or pass "
                   "--force to replace it")
    elif record is None and problem is None:
        held = [name for name in OUTPUT_FILES if (out / name).exists() or (out / name).is_symlink()]
        if any((out / MASKS_DIR).glob("*.png")):
            held.insert(0, MASKS_DIR + "/")
        if held:
            problem = (f"{out} holds samtrack outputs this render did not write ({', '.join(held)}); choose a new "
                       "or empty directory, or pass --force to replace them (other files are kept)")
    if problem is None and record is not None:
        return record
    if problem is not None:
        if not force:
            raise OutputError(problem)
        session = out / SESSION_FILE
        if session.is_symlink() or session.is_file():
            session.unlink()
        remove_outputs(out, masks=not in_place)
    return RenderRecord(identity)


def _copy_masks(run: RunWriter, files: list[tuple[int, Path]], record: RenderRecord,
                quiet: bool) -> tuple[int, int]:
    """Normalise the input masks into run/masks, reusing those this render wrote from the same content;
    return (written, reused). The record lists a mask only once its file is on disk."""
    written = reused = 0
    handed: dict[int, str] = {}  # frame -> digest of its input mask, given to the writer
    try:
        for i, src in tqdm(files, desc="masks", unit="frame", disable=quiet):
            name, dst = run.source.names[i], run.mask_path(i)
            digest = file_sha256(src)
            if record.reusable(name, digest, dst):
                reused += 1
                continue
            ids = load_id_mask(src)
            if ids.shape != (run.source.height, run.source.width):
                raise InputError(f"{src} is {ids.shape[1]}x{ids.shape[0]} but the frames are "
                                 f"{run.source.width}x{run.source.height}; masks must match their frames")
            record.forget(name)
            dst.unlink(missing_ok=True)  # so a file there after the writer is done is the one written now
            run.write_mask(i, ids)
            handed[i] = digest
            written += 1
        run.flush()
    finally:
        with suppress(SamtrackError):  # a failed write is reported by the flush above (or was the error)
            run.flush()
        for i, digest in handed.items():
            if run.is_done(i):
                record.add(run.source.names[i], digest, run.mask_path(i))
        with suppress(OutputError):  # without the record the next render writes these masks again
            record.write(run.out_dir)
    return written, reused


def _in_place_record(run: RunWriter, files: list[tuple[int, Path]], record: RenderRecord) -> None:
    """Record masks rendered where they are (MASKS is the run's own masks/ folder)."""
    for i, path in files:
        digest = file_sha256(path)
        if record.masks.get(run.source.names[i], [None])[0] != digest:
            record.add(run.source.names[i], digest, path)
    record.write(run.out_dir)


def _space_hint(exc: OutputError, masks: Path, outputs: bool) -> OutputError:
    """A full disk: what is saved, and that the same command finishes the job (other errors unchanged)."""
    if exc.errno not in DISK_FULL:
        return exc
    saved = "the masks are saved" if outputs else "the masks written so far are saved"
    return OutputError(f"{exc}; {saved} in {masks}: once there is space, run the same command again (it reuses "
                       "them) to write the rest", exc.errno)


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.alpha <= 1.0:
        raise PromptError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.fps is not None and args.fps <= 0:
        raise PromptError(f"--fps must be positive, got {args.fps}")
    labels = parse_labels(args.labels)
    started = time.perf_counter()
    with open_source(args.frames, fps=args.fps) as source:
        masks_dir = Path(args.masks)
        files = _mask_files(source, masks_dir, args.covered)
        identity = input_identity(source)
        lock = RunLock.open(args.out)
        try:
            out = lock.out_dir
            in_place = masks_dir.resolve() == (out / MASKS_DIR).resolve()
            record = _claim(out, identity, force=args.force, in_place=in_place)
            with RunWriter(out, source, background=True) as run_dir:
                try:
                    if in_place:
                        written, reused = 0, len(files)
                        _in_place_record(run_dir, files, record)
                    else:
                        written, reused = _copy_masks(run_dir, files, record, args.quiet)
                except OutputError as exc:
                    raise _space_hint(exc, run_dir.masks_dir, outputs=False) from exc
                masks_s = time.perf_counter() - started
                try:
                    outputs = run_dir.finalize(
                        objects=labels,
                        settings={"command": "render", "frames": str(args.frames), "masks": str(masks_dir),
                                  "alpha": args.alpha, "contours": not args.no_contours,
                                  "draw_labels": args.draw_labels, "show_ids": args.show_ids, "fps": source.fps},
                        timings={"masks_s": round(masks_s, 3)},
                        alpha=args.alpha, contours=not args.no_contours, draw_labels=args.draw_labels,
                        show_ids=args.show_ids, video=not args.no_video, gif=not args.no_gif,
                        frames=[i for i, _ in files], progress=not args.quiet)
                except OutputError as exc:
                    raise _space_hint(exc, run_dir.masks_dir, outputs=True) from exc
        except BaseException:
            discard_if_empty(lock)
            raise
        lock.release()
    if not args.quiet:
        total = time.perf_counter() - started
        print(f"rendered {len(files)} frames in {total:.1f} s ({len(files) / total:.1f} frames/s); "
              f"masks written {written}, reused {reused}")
        print(f"{args.out}: {', '.join(['masks/', *sorted(outputs)])}")
    return 0
