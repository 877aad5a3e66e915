"""Typed prompts (click, box, stroke, mask, text), the prompts-file parser, and which models a job needs.

A prompt names a frame and what to segment there. Clicks, boxes and strokes become a mask through
the segmenter; a mask prompt is the mask itself; a text prompt goes through the detector (Grounding
DINO) to boxes and then to masks. Every entry point (CLI, web app, batch runner) builds the same
prompt objects and hands them to the session.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samtrack.errors import InputError
from samtrack.tracking.settings import Settings


@dataclass(frozen=True)
class Click:
    """Clicks on one object: points (x, y) in frame pixels, labels 1 positive / 0 negative."""

    frame: int
    points: tuple[tuple[float, float], ...]
    labels: tuple[int, ...]
    label: str | None = None

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

    def record(self) -> dict:
        return {"kind": "mask", "frame": self.frame}

    def cut(self, segmenter: Any, frame: np.ndarray) -> np.ndarray:
        mask = np.asarray(self.mask).astype(bool)
        if mask.shape != frame.shape[:2]:
            raise InputError(f"mask is {mask.shape[1]}x{mask.shape[0]}, the frame is "
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
        raise InputError(f"{what} must be a list of (x, y) points") from exc
    if not pairs:
        raise InputError(f"{what} needs at least one point")
    return pairs


def make_prompt(frame: int, *, points: Any = None, labels: Any = None, box: Any = None, stroke: Any = None,
                mask: Any = None, text: str | None = None, label: str | None = None) -> Prompt:
    """The typed prompt for exactly one of points (with labels, default all positive), box, stroke,
    mask or text."""
    given = [name for name, v in (("points", points), ("box", box), ("stroke", stroke), ("mask", mask),
                                  ("text", text)) if v is not None]
    if len(given) != 1:
        raise InputError("give exactly one prompt: points (with labels), box, stroke, mask or text"
                         + (f" (got {', '.join(given)})" if given else ""))
    frame = int(frame)
    if points is not None:
        pts = _pairs(points, "points")
        labs = tuple(int(v) for v in (labels if labels is not None else [1] * len(pts)))
        if len(labs) != len(pts) or not set(labs) <= {0, 1}:
            raise InputError("labels must give 1 (positive) or 0 (negative) for every point")
        return Click(frame, pts, labs, label)
    if box is not None:
        try:
            values = tuple(float(v) for v in box)
        except (TypeError, ValueError) as exc:
            raise InputError(f"a box is four numbers x0, y0, x1, y1, got {box!r}") from exc
        if len(values) != 4:
            raise InputError(f"a box is four numbers x0, y0, x1, y1, got {box!r}")
        return Box(frame, values, label)  # type: ignore[arg-type]
    if stroke is not None:
        return Stroke(frame, _pairs(stroke, "stroke"), label)
    if mask is not None:
        return MaskPrompt(frame, np.asarray(mask).astype(bool), label)
    if not str(text).strip(" ."):
        raise InputError("a text prompt needs a caption naming objects, e.g. 'swan. duck'")
    return Text(frame, str(text))


def add(prompts: Prompts, prompt: Prompt) -> None:
    prompts.setdefault(prompt.frame, []).append(prompt)


def merge(*groups: Prompts) -> Prompts:
    out: Prompts = {}
    for group in groups:
        for items in group.values():
            for p in items:
                add(out, p)
    return dict(sorted(out.items()))


_FILE_KEYS = {"frame", "label", "points", "labels", "box", "stroke", "mask", "text"}


def parse_prompt_file(path: str | Path) -> Prompts:
    """Prompts from a JSON or YAML list, each ``{frame, label?, points+labels | box | stroke | mask | text}``;
    ``mask`` is a PNG path relative to the file (any nonzero pixel is the object)."""
    import yaml

    from samtrack.io.masks import load_id_mask

    file = Path(path)
    try:
        entries = yaml.safe_load(file.read_text())  # YAML is a superset of JSON
    except OSError as exc:
        raise InputError(f"cannot read prompts file {file}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"prompts file {file} is not valid JSON/YAML: {exc}") from exc
    if not isinstance(entries, list):
        raise InputError(f"prompts file {file} must hold a list of prompts")
    prompts: Prompts = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(f"prompt {n} in {file} is not a mapping")
        unknown = set(entry) - _FILE_KEYS
        if unknown:
            raise InputError(f"prompt {n} in {file} has unknown keys {sorted(unknown)}")
        kwargs = {k: entry[k] for k in ("label", "points", "labels", "box", "stroke", "text") if k in entry}
        if "mask" in entry:
            kwargs["mask"] = load_id_mask((file.parent / entry["mask"]).resolve()) > 0
        try:
            frame = int(entry.get("frame", 0))
            add(prompts, make_prompt(frame, **kwargs))
        except (InputError, ValueError, TypeError) as exc:
            raise InputError(f"prompt {n} in {file}: {exc}") from exc
    return prompts


def group_cli_items(items: Iterable[tuple[str, Any]]) -> Prompts:
    """Prompts from the command line's ordered items: ("frame", N) sets the frame of what follows,
    ("object", LABEL) starts an object that the following ("click", (x, y, neg?)) items refine; ("box",
    (x0, y0, x1, y1)), ("stroke", [(x, y), ...]) and ("text", CAPTION) are complete prompts."""
    entries: list[tuple[int, Prompt | dict]] = []  # clicked objects stay dicts until all clicks are in
    frame = 0
    current: dict | None = None
    for kind, value in items:
        if kind == "frame":
            frame, current = int(value), None
        elif kind == "object" or (kind == "click" and current is None):
            current = {"label": (value or None) if kind == "object" else None, "points": [], "labels": []}
            entries.append((frame, current))
        elif kind not in ("click", "box", "stroke", "text"):
            raise InputError(f"unknown prompt item {kind!r}")
        if kind == "click":
            current["points"].append((value[0], value[1]))
            current["labels"].append(0 if len(value) == 3 and value[2] == "neg" else 1)
        elif kind in ("box", "stroke", "text"):
            entries.append((frame, make_prompt(frame, **{kind: value})))
            current = None
    prompts: Prompts = {}
    for f, entry in entries:
        if isinstance(entry, dict):
            if not entry["points"]:
                raise InputError("--object was given without any --click after it")
            entry = make_prompt(f, points=entry["points"], labels=entry["labels"], label=entry["label"])
        add(prompts, entry)
    return dict(sorted(prompts.items()))


def needs(prompts: Prompts) -> set[str]:
    """Which kinds of model the prompts need: ``segmenter`` (clicks, boxes, strokes, text) and
    ``detector`` (text). Mask prompts are tracked as given."""
    kinds: set[str] = set()
    for items in prompts.values():
        for p in items:
            if isinstance(p, Text):
                kinds |= {"segmenter", "detector"}
            elif not isinstance(p, MaskPrompt):
                kinds.add("segmenter")
    return kinds


def models_needed(settings: Settings, prompts: Prompts, *, everything: bool = False, categories: str | None = None,
                  audio: bool = False) -> list[tuple[str, str]]:
    """(name, kind) of every model a job loads, tracker first: the prompts' models, the segmenter for
    segment-everything discovery, segmenter and detector for text categories or audio, the audio tagger."""
    kinds = needs(prompts)
    if everything:
        kinds.add("segmenter")
    if categories or audio:
        kinds |= {"segmenter", "detector"}
    if audio:
        kinds.add("audio")
    names = {"segmenter": settings.segmenter, "detector": settings.detector, "audio": settings.audio_model}
    tracker = settings.tracker if settings.tracker_checkpoint is None else settings.tracker_checkpoint
    needed = [(tracker, "tracker")] + [(names[k], k) for k in ("segmenter", "detector", "audio") if k in kinds]
    return list(dict.fromkeys(needed))
