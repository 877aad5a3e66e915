"""Every knob of the segment-and-track pipeline, with SAM-Track's names and defaults: the one owner.

`Settings` is frozen and made of one sub-config per model (segmenter, segment-everything, tracker,
detector, audio tagger) beside the segment-and-track parameters. Each field carries its help text and
command-line flag, so the CLI (`add_options` / `from_args`) and the web app build their options from
these fields alone; fields marked ``load`` say which weights a model loads, and the model pool keys on
them (:meth:`Settings.load_key`). A change is one ``settings.updated({"tracker.model": "deaot-t"})`` or
``dataclasses.replace``; nothing changes settings in place.

A new option is one field here (plus the code that reads it); a new model kind is one sub-config.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from dataclasses import dataclass, field, fields
from typing import Any

from samtrack.errors import InputError, PromptError

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")  # as samtrack.models.common (kept free of torch here)


def knob(default: Any, help: str, *, flag: str | None = None, load: bool = False, kind: type | None = None,
         choices: tuple | None = None) -> Any:
    """A settings field: its default, help text, command-line flag (default ``--field-name``), whether it
    changes the weights a model loads (`load`), its value type where the default does not tell
    (`kind`), and its `choices`."""
    return field(default=default, metadata={"help": help, "flag": flag, "load": load, "kind": kind,
                                            "choices": choices})


@dataclass(frozen=True)
class SegmenterSettings:
    """The promptable segmenter (SAM family) that cuts clicks, boxes, strokes and segment-everything."""

    model: str = knob("sam-vit-b", "segmenter: a name from `samtrack models`, a hub id or a local directory",
                      flag="--segmenter", load=True)


@dataclass(frozen=True)
class EverythingSettings:
    """Segment-everything (SAM-Track's ``sam_args['generator_args']``)."""

    points_per_side: int = knob(16, "segment-everything point grid (points per side)")
    pred_iou_thresh: float = knob(0.8, "segment-everything predicted-IoU threshold")
    stability_score_thresh: float = knob(0.9, "segment-everything stability threshold")
    crop_n_layers: int = knob(1, "segment-everything crop layers")
    crop_n_points_downscale_factor: int = knob(2, "segment-everything point-grid downscale per crop layer")
    min_mask_region_area: int = knob(200, "segment-everything: remove holes and islands smaller than this")


@dataclass(frozen=True)
class TrackerSettings:
    """The tracker (SAM-Track's ``aot_args`` and the SAM 2 family's memory)."""

    model: str = knob("r50-deaotl", "tracker: r50-deaotl, deaot-t/s/b/l, swinb-deaotl, aot-*, sam2.1-tiny/small/"
                      "base-plus/large, edgetam (see `samtrack models`), a hub id, a checkpoint file or a "
                      "directory", flag="--tracker", load=True)
    checkpoint: str | None = knob(None, "tracker checkpoint file or directory (none: the release in the model "
                                  "cache)", flag="--checkpoint", load=True, kind=str)
    long_term_mem_gap: int = knob(9999, "DeAOT: add a frame to long-term memory every N frames")
    max_len_long_term: int = knob(9999, "DeAOT: most frames in long-term memory")
    num_memory_frames: int | None = knob(None, "SAM 2 family: recent frames kept in each object's memory "
                                         "(none: the model's own, 6)", kind=int)
    max_conditioning_frames: int = knob(4, "SAM 2 family: most prompted frames kept per object (its first is "
                                        "always kept)")

    def __post_init__(self) -> None:
        if self.long_term_mem_gap < 1 or self.max_len_long_term < 1:
            raise PromptError("long_term_mem_gap and max_len_long_term must be >= 1")

    @property
    def source(self) -> str:
        """What to load: the checkpoint when one is given, else the model name."""
        return self.model if self.checkpoint is None else self.checkpoint


@dataclass(frozen=True)
class DetectorSettings:
    """The open-vocabulary detector for text prompts: Grounding DINO (SAM-Track's, with its defaults) or
    SAM 3 (instance masks, no segmenter)."""

    model: str = knob("grounding-dino-tiny", "text detector: grounding-dino-tiny/base, sam3, sam3-litetext-s0/s1/l "
                      "(see `samtrack models`), a hub id or a local directory (--text, --audio)", flag="--detector",
                      load=True)
    box_threshold: float = knob(0.25, "text: Grounding DINO box score threshold")
    text_threshold: float = knob(0.25, "text: Grounding DINO threshold for the words that name a box")
    box_size_threshold: float = knob(1.0, "text: drop objects whose box is larger than this fraction of the frame")
    score_threshold: float = knob(0.5, "text: SAM 3 detection score threshold")
    mask_threshold: float = knob(0.5, "text: SAM 3 mask probability threshold")


@dataclass(frozen=True)
class AudioSettings:
    """The audio tagger whose labels become text prompts (SAM-Track's AST defaults)."""

    model: str = knob("ast-audioset", "audio tagger (--audio)", flag="--audio-model", load=True)
    label_num: int = knob(6, "audio: most sound labels considered")
    audio_threshold: float = knob(0.05, "audio: smallest label probability")
    audio_top1: bool = knob(False, "audio: ground only the most probable sound (SAM-Track grounds every "
                            "label kept)")


MODEL_KINDS = ("segmenter", "tracker", "detector", "audio")  # the sub-configs that name a model


@dataclass(frozen=True)
class Settings:
    """Settings of a tracking session. Names and defaults follow SAM-Track's `segtracker_args`,
    `sam_args` and `aot_args`, so a SAM-Track configuration carries over unchanged."""

    sam_gap: int = knob(10, "key frames every N frames: discovery of new objects (--auto, --discover)")
    min_area: int = knob(200, "smallest new object in pixels")
    max_obj_num: int = knob(255, "most objects (ids 1..255)")
    min_new_obj_iou: float = knob(0.8, "share of a segment outside tracked objects needed to add it")
    device: str = knob("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps", load=True)
    precision: str = knob("auto", "tracker and segmenter precision; auto: fp16 on CUDA (as SAM-Track), bf16 on "
                          "CPUs where bf16 products measure faster than fp32, fp32 otherwise; fp32 is exact",
                          load=True, choices=PRECISION_CHOICES)
    segmenter: SegmenterSettings = field(default_factory=SegmenterSettings)
    everything: EverythingSettings = field(default_factory=EverythingSettings)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)

    def __post_init__(self) -> None:
        if self.sam_gap < 1:
            raise PromptError(f"sam_gap must be >= 1, got {self.sam_gap}")
        if not 1 <= self.max_obj_num <= 255:
            raise PromptError(f"max_obj_num must be in 1..255 (ids are stored as uint8), got {self.max_obj_num}")
        if not 0.0 <= self.min_new_obj_iou <= 1.0:
            raise PromptError(f"min_new_obj_iou must be in [0, 1], got {self.min_new_obj_iou}")
        if self.precision not in PRECISION_CHOICES:
            raise PromptError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, not {self.precision!r}")

    def load_key(self, kind: str) -> tuple:
        """What decides the weights of model `kind` (``segmenter``, ``tracker``, ``detector``, ``audio``):
        its ``load`` fields, the device and the precision. Models are shared between sessions by this key."""
        sub = getattr(self, kind)
        own = tuple(getattr(sub, f.name) for f in fields(sub) if f.metadata.get("load"))
        return (kind, *own, self.device, self.precision)

    def everything_args(self) -> dict:
        """Keyword arguments for `Segmenter.everything`."""
        return {**dataclasses.asdict(self.everything), "min_area": self.min_area, "max_obj_num": self.max_obj_num}

    # ------------------------------------------------------------------ paths: "tracker.model", "sam_gap"
    def get(self, path: str) -> Any:
        """The value at a dotted path (``"tracker.model"``, ``"sam_gap"``)."""
        value: Any = self
        for part in path.split("."):
            value = getattr(value, part)
        return value

    def updated(self, values: dict[str, Any]) -> Settings:
        """A copy with the values at dotted paths replaced, each converted to its field's type."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        known = dict(leaves())
        for path, value in values.items():
            if path not in known:
                raise PromptError(f"unknown setting {path!r}; known: {', '.join(known)}")
            head, _, rest = path.partition(".")
            value = _convert(known[path], value, path)
            if rest:
                nested.setdefault(head, {})[rest] = value
            else:
                top[head] = value
        for head, changes in nested.items():
            top[head] = dataclasses.replace(getattr(self, head), **changes)
        return dataclasses.replace(self, **top)

    def flat(self) -> dict[str, Any]:
        """Every value by dotted path (what run records compare and show)."""
        return {path: self.get(path) for path, _ in leaves()}

    # ------------------------------------------------------------------ records
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Settings:
        """Settings from :meth:`to_dict`'s nested form, or from the flat form of samtrack 0.1's records
        (``tracker``, ``tracker_checkpoint``, ``box_threshold`` ...); unknown keys are ignored."""
        values: dict[str, Any] = {}
        known = dict(leaves())
        for key, value in data.items():
            if isinstance(value, dict) and key in MODEL_KINDS + ("everything",):
                values.update({f"{key}.{k}": v for k, v in value.items() if f"{key}.{k}" in known})
            elif key in _LEGACY:
                values[_LEGACY[key]] = value
            elif key in known:
                values[key] = value
        return cls().updated(values)


@functools.cache
def leaves() -> tuple[tuple[str, dataclasses.Field], ...]:
    """(dotted path, field) of every setting, in declaration order."""
    out: list[tuple[str, dataclasses.Field]] = []
    for f in fields(Settings):
        sub = f.default_factory
        if sub is not dataclasses.MISSING and dataclasses.is_dataclass(sub):
            out += [(f"{f.name}.{g.name}", g) for g in fields(sub)]
        else:
            out.append((f.name, f))
    return tuple(out)


# samtrack 0.1's flat record keys -> dotted paths
_LEGACY = {"segmenter": "segmenter.model", "tracker": "tracker.model", "tracker_checkpoint": "tracker.checkpoint",
           "detector": "detector.model", "audio_model": "audio.model",
           **{g.name: f"{kind}.{g.name}" for kind, cls in (("everything", EverythingSettings),
                                                           ("tracker", TrackerSettings),
                                                           ("detector", DetectorSettings), ("audio", AudioSettings))
              for g in fields(cls) if g.name != "model"}}


def _kind(f: dataclasses.Field) -> type:
    return f.metadata.get("kind") or type(f.default)


def _convert(f: dataclasses.Field, value: Any, path: str) -> Any:
    """`value` as the field's type (the app's number boxes give floats, the CLI strings)."""
    kind = _kind(f)
    if value is None or (isinstance(value, str) and kind is not str and not value.strip()):
        if f.default is None:
            return None
        raise PromptError(f"{path} needs a value")
    try:
        if kind is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
        if kind is int:
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        return kind(value)
    except (TypeError, ValueError):
        raise PromptError(f"{path} must be {'a whole number' if kind is int else 'a ' + kind.__name__}, "
                         f"got {value!r}") from None


def flag(path: str) -> str:
    """The command-line flag of a setting (``--tracker`` for ``tracker.model``)."""
    f = dict(leaves())[path]
    return f.metadata.get("flag") or "--" + path.rsplit(".", 1)[-1].replace("_", "-")


# ---------------------------------------------------------------------------------------- command line
_GROUPS = {"": "segment-and-track parameters", "segmenter": "models", "tracker": "tracker",
           "everything": "segment everything", "detector": "text (detector)", "audio": "sound (audio tagger)"}


def add_options(parser: argparse.ArgumentParser, defaults: Settings | None = None) -> None:
    """One option per setting, grouped by model, named by its flag, with its help and default."""
    d = defaults or Settings()
    groups: dict[str, Any] = {}
    for path, f in leaves():
        head = path.split(".")[0] if "." in path else ""
        if path in ("device", "precision"):
            head = "segmenter"
        group = groups.get(head) or groups.setdefault(head, parser.add_argument_group(_GROUPS[head]))
        default = d.get(path)
        help_text = f.metadata["help"] + ("" if default in (None, False) else f" (default: {default})")
        if _kind(f) is bool:
            group.add_argument(flag(path), dest=path, action="store_true", default=default, help=help_text)
            continue
        group.add_argument(flag(path), dest=path, default=default, choices=f.metadata.get("choices"),
                           type=lambda text, f=f, path=path: _parse(f, text, path), help=help_text,
                           metavar=None if f.metadata.get("choices") else _METAVARS[_kind(f)])


_METAVARS = {int: "N", float: "X", str: "NAME"}


def _parse(f: dataclasses.Field, text: str, path: str) -> Any:
    try:
        return _convert(f, text, path)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def from_args(args: argparse.Namespace) -> Settings:
    """The settings the options of :func:`add_options` give."""
    return Settings().updated({path: getattr(args, path) for path, _ in leaves()})
