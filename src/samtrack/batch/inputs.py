"""What a batch processes: videos, image folders, and manifests (CSV or JSON lines) listing them.

A manifest row names one input and, optionally, what to track in it and where its outputs go:

    input,name,prompts,text,auto
    clips/a.mp4,,,,              -> the command's own prompts or mode
    clips/b.mp4,b-swans,,swan.,  -> the swans, found by text on frame 0
    frames/c,,c_prompts.yaml,,   -> the prompts of that file
    clips/d.mp4,,,,true          -> automatic mode

The same fields as JSON lines: {"input": "clips/b.mp4", "text": "swan."}. Relative paths are taken
from the manifest's folder; every path is recorded absolute, as workers on other machines need it. A row that sets prompts, text or auto replaces the command's prompts for
that input.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from samtrack.errors import InputError

MANIFEST_SUFFIXES = {".csv", ".jsonl", ".ndjson"}
FIELDS = {"input", "name", "prompts", "text", "auto"}


@dataclass(frozen=True)
class BatchInput:
    """One input of a batch and what to do with it."""

    input: str  # a video file or a folder of frames
    name: str  # its output folder under the batch's --out (unique within the batch)
    prompts: str | None = None  # a prompts file that replaces the command's prompts
    text: str | None = None  # a caption that replaces the command's prompts (with auto: categories)
    auto: bool | None = None  # automatic mode for this input (None: as the command says)

    @property
    def overrides(self) -> bool:
        """Whether this input says itself what to track."""
        return self.prompts is not None or self.text is not None or self.auto is not None


def _flag(value: object, where: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "auto"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise InputError(f"{where}: auto must be true or false, got {value!r}")


def _rows(path: Path) -> list[tuple[str, dict]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read manifest {path}: {exc}") from exc
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "input" not in reader.fieldnames:
            raise InputError(f"manifest {path} needs a header row with an 'input' column "
                             f"(and optionally {', '.join(sorted(FIELDS - {'input'}))})")
        return [(f"{path} line {n}", {k: v for k, v in row.items() if k is not None})
                for n, row in enumerate(reader, 2)]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path} line {n} is not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise InputError(f"{path} line {n} must be a JSON object with an 'input' key")
        rows.append((f"{path} line {n}", row))
    return rows


def _from_manifest(path: Path) -> list[dict]:
    entries = []
    for where, row in _rows(path):
        unknown = set(row) - FIELDS
        if unknown:
            raise InputError(f"{where}: unknown fields {sorted(unknown)}; known: {sorted(FIELDS)}")
        if not row.get("input"):
            raise InputError(f"{where}: no input given")

        def local(value: object) -> str | None:
            return os.path.abspath(path.parent / str(value)) if value else None

        entries.append({"input": local(row["input"]), "name": row.get("name") or None,
                        "prompts": local(row.get("prompts")), "text": row.get("text") or None,
                        "auto": _flag(row.get("auto"), where)})
    return entries


def collect_inputs(paths: list[str]) -> list[BatchInput]:
    """The inputs named on the command line, with manifests expanded, each with a unique name.

    Names default to the video's stem or the folder's name; a repeated name gets -2, -3, ... in
    the order given, so the same command always maps an input to the same output folder.
    """
    entries: list[dict] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            entries.extend(_from_manifest(path))
        else:
            entries.append({"input": os.path.abspath(path), "name": None, "prompts": None, "text": None, "auto": None})
    if not entries:
        raise InputError("no inputs: give videos, folders of frames, or a manifest (.csv or .jsonl)")
    taken: set[str] = set()
    inputs = []
    for entry in entries:
        explicit = entry["name"] is not None
        base = str(entry["name"] or Path(entry["input"]).stem or "input")
        if Path(base).name != base or base in (".", ".."):
            raise InputError(f"output name {base!r} of {entry['input']} must be a plain folder name")
        if explicit and base in taken:
            raise InputError(f"two inputs are named {base!r}; names must be unique in a batch")
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        inputs.append(BatchInput(**{**entry, "name": name}))
    return inputs
