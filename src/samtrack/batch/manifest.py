"""`batch.jsonl`: one JSON line per input with its status, rewritten atomically as inputs finish.

Fields: name, input, status (pending, running, retrying, done, failed), attempts, worker, started,
finished, seconds, frames (of the input), tracked (frames processed by the attempt that finished
it), fps, objects, models_loaded (models that input made its worker load), resumed, error.
A re-run reads it to skip what is finished.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from samtrack.batch.inputs import BatchInput
from samtrack.errors import InputError
from samtrack.io.atomic import write_text_atomic

MANIFEST = "batch.jsonl"
RUN_JSON = "run.json"  # written last by a finished track run


class Manifest:
    """The records of a batch's inputs, in input order; `update` writes the file."""

    def __init__(self, out_dir: Path, inputs: list[BatchInput]) -> None:
        self.path = out_dir / MANIFEST
        previous = self._read()
        self.records: dict[str, dict[str, Any]] = {}
        for item in inputs:
            old = previous.get(item.name)
            if old is not None and old.get("input") != item.input:
                raise InputError(f"{self.path} records {item.name!r} as the output of {old.get('input')}, "
                                 f"not {item.input}; use another --out or give the input another name")
            self.records[item.name] = old or {"name": item.name, "input": item.input, "status": "pending",
                                              "attempts": 0}

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        records = {}
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                record = json.loads(line)
                records[record["name"]] = record
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{self.path} line {n} is not a batch record ({exc}); move the file away "
                                 "to start the batch record afresh") from exc
        return records

    def finished(self, item: BatchInput, out_dir: Path, retry_failed: bool) -> bool:
        """Whether a re-run leaves this input alone: its outputs are complete, or it failed before
        (unless `retry_failed`)."""
        status = self.records[item.name]["status"]
        if status == "failed":
            return not retry_failed
        return status == "done" and (out_dir / item.name / RUN_JSON).is_file()

    def update(self, name: str, **fields: Any) -> dict[str, Any]:
        record = self.records[name]
        record.update(fields)
        self.write()
        return record

    def write(self) -> None:
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records.values()))
