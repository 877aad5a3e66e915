"""Where an export goes: checked before anything is read, written under a temporary name beside it,
and moved into place only when complete, so an interrupted export leaves no half file or folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from samtrack.errors import OutputError
from samtrack.io.atomic import atomic_path, temp_path_for, writing


def check_target(out: Path, *, folder: bool, force: bool, run_dir: Path) -> None:
    """Refuse an output path that exists (unless `force`), is of the wrong kind, or would hold the run."""
    resolved, run = out.resolve(), run_dir.resolve()
    if resolved == run or resolved in run.parents:
        raise OutputError(f"{out} holds the run {run_dir}; write the export somewhere else")
    kind = "folder" if folder else "file"
    if out.is_dir() != folder and out.exists():
        raise OutputError(f"{out} exists and is not a {kind}; give a new {kind} path for the export")
    if out.exists() and not force:
        raise OutputError(f"{out} already exists; pass --force (force=True) to replace it, or choose another path")


@contextmanager
def staged(out: Path, *, folder: bool) -> Iterator[Path]:
    """Yield a temporary file or folder to write the export into; on success it replaces `out`
    (an existing `out` is removed only then), on error it is deleted."""
    if not folder:
        with atomic_path(out) as tmp:
            yield tmp
        return
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(out)
        tmp.mkdir()
    try:
        yield tmp
        with writing(out):
            old = None
            if out.exists():
                old = temp_path_for(out)
                os.replace(out, old)
            os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
