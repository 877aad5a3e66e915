"""`samtrack render`'s record of a run directory it wrote: the frames it rendered and every mask it wrote.

    record = RenderRecord.read(out) or RenderRecord(input_identity(source))
    record.input_problem(identity)           # why other frames cannot reuse this render (None: same frames)
    record.reusable(name, digest, out_file)  # out_file is what render wrote from a mask of that digest
    record.forget(name); ...write the mask...; record.add(name, digest, out_file)
    record.write(out)                        # atomically, in <out>/render.json

A mask is reused only when render itself wrote the file now in `masks/` (same SHA-256) from a mask file
of the same content (same SHA-256): never by file times, so a mask edited by hand, or written by
anything else since, is written again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samtrack.errors import OutputError
from samtrack.io.atomic import write_text_atomic
from samtrack.io.outputs import RENDER_JSON
from samtrack.io.rundir import input_differences

FORMAT = "samtrack-render/1"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass
class RenderRecord:
    """The input identity of the frames rendered, and frame name -> [mask digest, written file digest]."""

    input: dict[str, Any]
    masks: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, out: Path) -> RenderRecord | None:
        """The record in `out` (None when there is none); OutputError when the file is not one."""
        path = out / RENDER_JSON
        if not (path.exists() or path.is_symlink()):
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or not isinstance(data["input"], dict):
                raise ValueError(f"format {data.get('format')!r}")
            masks = {str(k): [str(d) for d in v] for k, v in data["masks"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OutputError(f"{path} is not a samtrack render record ({exc}); choose another output directory, "
                              "or pass --force to render there afresh") from exc
        return cls(data["input"], masks)

    def input_problem(self, identity: dict[str, Any]) -> str | None:
        """Why frames of `identity` are not the frames this render was made from (None when they are)."""
        diffs = input_differences(self.input, identity)
        return f"{'; '.join(diffs)}; it was made from {self.input.get('path')}" if diffs else None

    def reusable(self, name: str, mask_digest: str, out_file: Path) -> bool:
        """Whether `out_file` is the file render wrote for frame `name` from a mask of `mask_digest`."""
        entry = self.masks.get(name)
        if entry is None or entry[0] != mask_digest or not out_file.is_file() or out_file.is_symlink():
            return False
        return file_sha256(out_file) == entry[1]

    def forget(self, name: str) -> None:
        self.masks.pop(name, None)

    def add(self, name: str, mask_digest: str, out_file: Path) -> None:
        self.masks[name] = [mask_digest, file_sha256(out_file)]

    def write(self, out: Path) -> None:
        doc = {"format": FORMAT, "input": self.input, "masks": self.masks}
        write_text_atomic(out / RENDER_JSON, json.dumps(doc, separators=(",", ":")))
