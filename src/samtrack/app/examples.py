"""Example inputs the app offers: the synthetic clip (made on first use, always there) and the videos and
zips of frames in an examples folder.

The folder is `samtrack app --examples DIR` (`AppConfig.examples`); without it, `$SAMTRACK_EXAMPLES`,
else `<model cache>/examples` (``~/.cache/samtrack/examples``, beside the downloaded weights) when that
folder exists. Only the files directly in the folder are offered, by file name; the page sends back a
name, never a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from samtrack.io.sources import VIDEO_SUFFIXES
from samtrack.models import registry

SYNTHETIC = "Synthetic clip (three moving shapes)"
SUFFIXES = (*VIDEO_SUFFIXES, ".zip")


def default_folder() -> Path | None:
    """$SAMTRACK_EXAMPLES, else the model cache's examples/ folder if it exists (None: no examples folder)."""
    named = os.environ.get("SAMTRACK_EXAMPLES")
    if named:
        return Path(named).expanduser()
    folder = registry.cache_dir() / "examples"
    return folder if folder.is_dir() else None


def example_files(folder: Path | None) -> dict[str, Path]:
    """Name -> path of every video and zip of frames directly in `folder` (sorted by name)."""
    if folder is None or not folder.is_dir():
        return {}
    files = [p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file() and not p.name.startswith(".")]
    return {p.name: p for p in sorted(files, key=lambda p: p.name.lower())}


def synthetic_clip(root: Path) -> Path:
    """The synthetic example clip under `root` (written the first time)."""
    from samtrack.io.synthetic import make_clip

    clip = root / "example" / "example.mp4"
    if not clip.exists():
        make_clip(clip.with_name("tmp.mp4"), seconds=2.0).rename(clip)
    return clip
