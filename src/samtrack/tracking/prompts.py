"""Typed prompts (click, box, stroke, mask, text), the prompts-file and annotation readers, and which models a
job needs.

A prompt names a frame and what to segment there. Clicks, boxes and strokes become a mask through
the segmenter; a mask prompt is the mask itself; a text prompt goes through the detector (Grounding
DINO) to boxes and then to masks. Every entry point (CLI, web app, batch runner) builds the same
prompt objects and hands them to the session.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samtrack.errors import InputError, PromptError
from samtrack.tracking.objects import MAX_LABEL, check_label
from samtrack.tracking.settings import Settings

NEEDS_POSITIVE = ("a click prompt needs at least one positive click on the object (label 1); negative clicks "
                  "(label 0) only take area away from it")


@dataclass(frozen=True)
class Click:
    """Clicks on one object: points (x, y) in frame pixels, labels 1 positive / 0 negative."""

    frame: int
    points: tuple[tuple[float, float], ...]
    labels: tuple[int, ...]
    label: str | None = None
    obj_id: int | None = None  # an existing object this prompt gives a new mask (None: a new object)

    def record(self) -> dict:
        return {"kind": "click", "frame": self.frame, "points": [list(p) for p in self.points],
                "labels": list(self.labels)}

    def cut(self, segmenter: Any, frame: np.ndarray) -> np.ndarray:
        return segmenter.click(frame, [list(p) for p in self.points], list(self.labels))


@dataclass(frozen=True)
class Box:
    """A box (x0, y0, x1, y1) around one object."""

    frame: int
    box: tuple[float, float, float, float]
    label: str | None = None
    obj_id: int | None = None  # an existing object this prompt gives a new mask (None: a new object)

    def record(self) -> dict:
        return {"kind": "box", "frame": self.frame, "box": list(self.box)}

    def cut(self, segmenter: Any, frame: np.ndarray) -> np.ndarray:
        return segmenter.box(frame, list(self.box))


@dataclass(frozen=True)
class Stroke:
    """A brush stroke over one object: its polyline (x, y) points (SAM-Track prompts with its box)."""

    frame: int
    points: tuple[tuple[float, float], ...]
    label: str | None = None
    obj_id: int | None = None  # an existing object this prompt gives a new mask (None: a new object)

    def record(self) -> dict:
        return {"kind": "stroke", "frame": self.frame, "points": [list(p) for p in self.points]}

    def cut(self, segmenter: Any, frame: np.ndarray) -> np.ndarray:
        return segmenter.stroke(frame, [list(p) for p in self.points])


@dataclass(frozen=True, eq=False)
class MaskPrompt:
    """An object given as a boolean mask of the frame's size (drawn, or e.g. a ground-truth PNG)."""

    frame: int
    mask: np.ndarray
    label: str | None = None
    obj_id: int | None = None  # an existing object this prompt gives a new mask (None: a new object)

    def record(self) -> dict:
        return {"kind": "mask", "frame": self.frame}

    def cut(self, segmenter: Any, frame: np.ndarray) -> np.ndarray:
        mask = np.asarray(self.mask).astype(bool)
        if mask.shape != frame.shape[:2]:
            raise PromptError(f"mask is {mask.shape[1]}x{mask.shape[0]}, the frame is "
                             f"{frame.shape[1]}x{frame.shape[0]}")
        return mask


@dataclass(frozen=True)
class Text:
    """Objects named by a caption ("swan. duck"): every detected instance becomes an object. `sounds`:
    the (AudioSet label, probability) pairs the caption was made from, when it comes from the soundtrack."""

    frame: int
    caption: str
    sounds: tuple[tuple[str, float], ...] = ()


def audio_caption(sounds: Iterable[tuple[str, float]]) -> str:
    """One caption naming every sound label, as Grounding DINO categories ("Bird. Water")."""
    return join_captions(*(label for label, _ in sounds))


def join_captions(*captions: str | None) -> str:
    """Captions joined into one, each category once, separated by '. ' (Grounding DINO's separator)."""
    parts = [c.strip(" .") for caption in captions if caption for c in caption.split(".")]
    return ". ".join(dict.fromkeys(p for p in parts if p))


ObjectPrompt = Click | Box | Stroke | MaskPrompt
Prompt = Click | Box | Stroke | MaskPrompt | Text
Prompts = dict[int, list[Prompt]]  # frame -> prompts on it, in order


def _pairs(values: Iterable, what: str) -> tuple[tuple[float, float], ...]:
    try:
        pairs = tuple((float(x), float(y)) for x, y in values)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{what} must be a list of (x, y) points") from exc
    if not pairs:
        raise PromptError(f"{what} needs at least one point")
    return pairs


def make_prompt(frame: int, *, points: Any = None, labels: Any = None, box: Any = None, stroke: Any = None,
                mask: Any = None, text: str | None = None, label: str | None = None,
                obj_id: int | None = None) -> Prompt:
    """The typed prompt for exactly one of points (with labels, default all positive), box, stroke,
    mask or text; `obj_id` makes it a new mask of that existing object on this frame (not with text)."""
    given = [name for name, v in (("points", points), ("box", box), ("stroke", stroke), ("mask", mask),
                                  ("text", text)) if v is not None]
    if len(given) != 1:
        raise PromptError("give exactly one prompt: points (with labels), box, stroke, mask or text"
                         + (f" (got {', '.join(given)})" if given else ""))
    frame = int(frame)
    label = _label(label)
    if obj_id is not None:
        if isinstance(obj_id, bool) or not isinstance(obj_id, int) or not 1 <= obj_id <= 255:
            raise PromptError(f"an object id is a whole number in 1..255, got {obj_id!r}")
        if text is not None:
            raise PromptError("a text prompt finds new objects; it cannot refine object "
                              f"{obj_id} (use clicks, a box, a stroke or a mask)")
    if points is not None:
        pts = _pairs(points, "points")
        labs = tuple(int(v) for v in (labels if labels is not None else [1] * len(pts)))
        if len(labs) != len(pts) or not set(labs) <= {0, 1}:
            raise PromptError("labels must give 1 (positive) or 0 (negative) for every point")
        if 1 not in labs:  # SAM would cut everything but the clicked spots; SAM-Track refuses it too
            raise PromptError(NEEDS_POSITIVE)
        return Click(frame, pts, labs, label, obj_id)
    if box is not None:
        try:
            values = tuple(float(v) for v in box)
        except (TypeError, ValueError) as exc:
            raise PromptError(f"a box is four numbers x0, y0, x1, y1, got {box!r}") from exc
        if len(values) != 4:
            raise PromptError(f"a box is four numbers x0, y0, x1, y1, got {box!r}")
        return Box(frame, values, label, obj_id)  # type: ignore[arg-type]
    if stroke is not None:
        return Stroke(frame, _pairs(stroke, "stroke"), label, obj_id)
    if mask is not None:
        return MaskPrompt(frame, np.asarray(mask).astype(bool), label, obj_id)
    if not str(text).strip(" ."):
        raise PromptError("a text prompt needs a caption naming objects, e.g. 'swan. duck'")
    for category in str(text).split("."):  # each category names (labels) the objects it finds
        if len(category.strip()) > MAX_LABEL:
            raise PromptError(f"a text prompt names categories of at most {MAX_LABEL} characters each (they become "
                             f"labels), one has {len(category.strip())}; separate categories with '.'")
    return Text(frame, str(text))


def _label(value: Any) -> str | None:
    """A prompt's label as text: a string or a number (YAML reads `label: 7` as one), at most `MAX_LABEL`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise PromptError(f"label must be one piece of text, got {shown}; a prompt makes one object, give each "
                         "object its own prompt")
    return check_label(str(value))


def add(prompts: Prompts, prompt: Prompt) -> None:
    prompts.setdefault(prompt.frame, []).append(prompt)


def merge(*groups: Prompts) -> Prompts:
    out: Prompts = {}
    for group in groups:
        for items in group.values():
            for p in items:
                add(out, p)
    return dict(sorted(out.items()))


_FILE_KEYS = {"frame", "id", "label", "points", "labels", "box", "stroke", "mask", "text"}


def parse_prompt_file(path: str | Path) -> Prompts:
    """Prompts from a JSON or YAML list, each ``{frame, id?, label?, points+labels | box | stroke | mask |
    text}``; ``mask`` is a PNG path relative to the file (any nonzero pixel is the object); ``id`` gives an
    object made by an earlier prompt a new mask on this frame."""
    import yaml

    from samtrack.io.masks import load_id_mask

    file = Path(path)
    try:
        entries = yaml.safe_load(file.read_text())  # YAML is a superset of JSON
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not a text file"
        raise PromptError(f"cannot read the prompts file {file}: {reason}") from exc
    except yaml.YAMLError as exc:
        raise PromptError(f"{file} is not valid YAML or JSON: {_yaml_problem(exc)}; fix it there") from exc
    if not isinstance(entries, list):
        raise PromptError(f"{file} must hold a list of prompts (e.g. '- frame: 0' then 'box: [x0, y0, x1, y1]')")
    prompts: Prompts = {}
    for n, entry in enumerate(entries, 1):
        where = f"{file}, prompt {n}"
        if not isinstance(entry, dict):
            raise PromptError(f"{where}: a prompt is a mapping like {{frame: 0, box: [x0, y0, x1, y1]}}, "
                             f"got {entry!r}")
        unknown = set(entry) - _FILE_KEYS
        if unknown:
            raise PromptError(f"{where} has unknown keys {sorted(unknown)}; known: {sorted(_FILE_KEYS)}")
        frame = entry.get("frame", 0)
        if isinstance(frame, bool) or not isinstance(frame, int):
            raise PromptError(f"{where}: frame must be a whole number, got {frame!r}")
        if frame < 0:
            raise PromptError(f"{where}: frame must be 0 or more, got {frame}")
        kwargs = {k: entry[k] for k in ("label", "points", "labels", "box", "stroke", "text") if k in entry}
        if "id" in entry:
            kwargs["obj_id"] = entry["id"]
        try:
            if "mask" in entry:
                kwargs["mask"] = load_id_mask((file.parent / str(entry["mask"])).resolve()) > 0
            add(prompts, make_prompt(frame, **kwargs))
        except (InputError, ValueError, TypeError) as exc:
            raise PromptError(f"{where}: {exc}") from exc
    return prompts


def load_annotations(path: str | Path, source: Any) -> Prompts:
    """Mask prompts from a COCO file or a DAVIS-style folder of id-mask PNGs (`samtrack track --init-from`),
    for the frames of `source` (a FrameSource; see `samtrack.io.annotations` for how frames are matched).

    Each object starts from its mask on the first frame it is annotated on, labelled with its category;
    its masks on later frames are not used (the tracker carries it from there). Objects are added in
    order of frame, then of their id in the file, so objects numbered 1..N keep their numbers.
    """
    from samtrack.io.annotations import read_annotations

    first: dict[int, Any] = {}
    for obj in read_annotations(path, source.names, source.width, source.height):
        first.setdefault(obj.obj_id, obj)
    prompts: Prompts = {}
    for obj in sorted(first.values(), key=lambda o: (o.frame, o.obj_id)):
        add(prompts, MaskPrompt(obj.frame, obj.mask, obj.label))
    return prompts


def _yaml_problem(exc: Exception) -> str:
    """A YAML error in one line: what is wrong, and where (line and column, counted from 1)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def check_prompts(prompts: Prompts, *, frames: int, width: int, height: int, end: int | None = None,
                  max_obj_num: int = 255, existing: Collection[int] = ()) -> None:
    """Refuse prompts that cannot work, before anything is written or any model loads: frames outside
    the video or after `end`, clicks and strokes outside the frame, boxes without area or outside it,
    masks of another size or empty, ids of objects that do not exist by then, and more objects than
    `max_obj_num` (with the `existing` ones' ids)."""
    if end is not None and not 0 <= end < frames:
        raise PromptError(f"the last frame to track (--end {end}) is outside the video (frames 0..{frames - 1})")
    known = set(existing)
    count, next_id, texts = len(known), max(known, default=0) + 1, False
    for frame, items in sorted(prompts.items()):
        for p in items:
            obj_id = getattr(p, "obj_id", None)
            if obj_id is not None and obj_id not in known and not texts:  # text finds objects we cannot count
                raise PromptError(f"the prompt on frame {frame} refines object {obj_id}, which does not exist by "
                                  f"then (objects {', '.join(map(str, sorted(known))) or 'none'}); objects are "
                                  "numbered from 1 in the order their first prompt comes")
            if isinstance(p, Text):
                texts = True
            elif obj_id is None:
                known.add(next_id)
                next_id += 1
            if not 0 <= frame < frames:
                raise PromptError(f"the prompt on frame {frame} is outside the video (frames 0..{frames - 1})")
            if end is not None and frame > end:
                raise PromptError(f"the prompt on frame {frame} is after the last frame to track (--end {end}); "
                                 "move it, or track further")
            check_prompt(p, width, height)
            count += not isinstance(p, Text) and obj_id is None
    if count > max_obj_num:
        raise PromptError(f"{count} objects would be tracked, but max_obj_num is {max_obj_num}; prompt fewer "
                         "objects, or raise --max-obj-num (up to 255)")


def check_prompt(p: Prompt, width: int, height: int) -> None:
    """Refuse a prompt whose points, box or mask do not fit a width×height frame."""
    frame = f"the {width}x{height} frame"
    if isinstance(p, Click) and 1 not in p.labels:
        raise PromptError(f"{NEEDS_POSITIVE} (frame {p.frame})")
    if isinstance(p, (Click, Stroke)):
        what = "click" if isinstance(p, Click) else "stroke point"
        for x, y in p.points:
            if not (0 <= x < width and 0 <= y < height):
                raise PromptError(f"{what} ({x:g}, {y:g}) on frame {p.frame} is outside {frame}")
    elif isinstance(p, Box):
        x0, y0, x1, y1 = p.box
        shown = f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) on frame {p.frame}"
        if x1 <= x0 or y1 <= y0:
            raise PromptError(f"{shown} has no area: give x0, y0, x1, y1 with x1 > x0 and y1 > y0")
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise PromptError(f"{shown} lies outside {frame}")
    elif isinstance(p, MaskPrompt):
        h, w = p.mask.shape[:2]
        if (h, w) != (height, width):
            raise PromptError(f"mask of the prompt on frame {p.frame} is {w}x{h}, the frame is {width}x{height}")
        if not p.mask.any():
            raise PromptError(f"mask of the prompt on frame {p.frame} is empty")


def group_cli_items(items: Iterable[tuple[str, Any]]) -> Prompts:
    """Prompts from the command line's ordered items: ("frame", N) sets the frame of what follows;
    ("object", LABEL) starts a new object and ("object_id", N) picks existing object N: the following
    ("click", (x, y, neg?)) items are one prompt on it, or the next ("box", ...) or ("stroke", ...) is;
    a box or stroke with no object before it is a new unlabelled object; ("text", CAPTION) finds objects."""
    entries: list[tuple[int, Prompt | dict]] = []  # clicked objects stay dicts until all clicks are in
    frame = 0
    current: dict | None = None  # the object the next clicks, box or stroke are for

    def start(label: str | None = None, obj_id: int | None = None) -> dict:
        entries.append((frame, {"label": label, "obj_id": obj_id, "points": [], "labels": []}))
        return entries[-1][1]  # type: ignore[return-value]

    for kind, value in items:
        if kind == "frame":
            frame, current = int(value), None
        elif kind == "object":
            current = start(label=value or None)
        elif kind == "object_id":
            current = start(obj_id=int(value))
        elif kind == "click":
            current = current if current is not None else start()
            current["points"].append((value[0], value[1]))
            current["labels"].append(0 if len(value) == 3 and value[2] == "neg" else 1)
        elif kind in ("box", "stroke"):
            if current is not None and not current["points"]:  # the box or stroke of the object just named
                entries.pop()  # it is the last entry: clicks go to it, anything else ends it
                entries.append((frame, make_prompt(frame, label=current["label"], obj_id=current["obj_id"],
                                                   **{kind: value})))
            else:
                entries.append((frame, make_prompt(frame, **{kind: value})))
            current = None
        elif kind == "text":
            entries.append((frame, make_prompt(frame, text=value)))
            current = None
        else:
            raise PromptError(f"unknown prompt item {kind!r}")
    prompts: Prompts = {}
    for f, entry in entries:
        if isinstance(entry, dict):
            if not entry["points"]:
                raise PromptError("--object / --object-id was given without a --click, --box or --stroke after it")
            entry = make_prompt(f, points=entry["points"], labels=entry["labels"], label=entry["label"],
                                obj_id=entry["obj_id"])
        add(prompts, entry)
    return dict(sorted(prompts.items()))


def needs(prompts: Prompts) -> set[str]:
    """Which kinds of model the prompts need: ``segmenter`` (clicks, boxes, strokes) and ``detector``
    (text). Mask prompts are tracked as given."""
    kinds: set[str] = set()
    for items in prompts.values():
        for p in items:
            if isinstance(p, Text):
                kinds.add("detector")
            elif not isinstance(p, MaskPrompt):
                kinds.add("segmenter")
    return kinds


def models_needed(settings: Settings, prompts: Prompts, *, everything: bool = False, categories: str | None = None,
                  audio: bool = False, detector: bool = True) -> list[tuple[str, str]]:
    """(name, kind) of every model a job loads, tracker first: the prompts' models, the segmenter for
    segment-everything discovery, the detector for text categories or audio (and the segmenter to cut
    its boxes, unless the detector makes masks itself: SAM 3), the audio tagger."""
    from samtrack.models.detectors import makes_masks

    kinds = needs(prompts)
    if everything:
        kinds.add("segmenter")
    if (categories or audio) and detector:  # not when the tracker detects by itself (SAM 3 concept tracking)
        kinds.add("detector")
    if audio:
        kinds.add("audio")
    if "detector" in kinds and not makes_masks(settings.detector.model):
        kinds.add("segmenter")
    names = {"segmenter": settings.segmenter.model, "detector": settings.detector.model,
             "audio": settings.audio.model}
    needed = [(settings.tracker.source, "tracker")] + [(names[k], k) for k in ("segmenter", "detector", "audio")
                                                       if k in kinds]
    return list(dict.fromkeys(needed))
