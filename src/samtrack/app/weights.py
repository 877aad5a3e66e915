"""Which models are on this machine, as the page says it: the banner for missing weights, the tracker
list marked "(on disk)" or "(downloads N MB)", and what choosing a tracker that is not on disk means."""

from __future__ import annotations

from pathlib import Path

from samtrack.models import registry
from samtrack.tracking.settings import Settings


def on_disk(name: str, kind: str) -> bool:
    """Whether the model `name` (a registry name, a hub id, or a path) can load without a download."""
    if Path(name).expanduser().exists():
        return True
    spec = registry.find_spec(name, kind)
    return spec is not None and registry.is_cached(spec)


def missing_weights(settings: Settings) -> list[str]:
    """Models the settings name whose weights are neither a local path nor in the cache."""
    wanted = [(settings.segmenter.model, "segmenter"), (settings.tracker.source, "tracker")]
    missing = []
    for name, kind in wanted:
        if not on_disk(name, kind):
            spec = registry.find_spec(name)
            missing.append(name if spec is None else spec.name)
    return missing


def weights_banner(settings: Settings) -> str:
    missing = missing_weights(settings)
    if not missing:
        return ""
    return (f"**Weights missing:** {', '.join(f'`{name}`' for name in missing)}. Prompts and tracking need them: "
            "fetch them with "
            f"`samtrack download {' '.join(missing)}` on a machine with internet access (or pass local paths "
            "with `--segmenter` / `--checkpoint`), then restart `samtrack app`.")


def tracker_choices(current: str, checkpoint: str | None) -> list[tuple[str, str]]:
    """(label, name) of every tracker, each marked with what choosing it means: "(on disk)", or the
    download it needs first; those on disk come first. A tracker the app was started with from a
    checkpoint counts as on disk; one given as a path is listed as itself."""
    current_spec = registry.find_spec(current, "tracker")
    ready, later = [], []
    for spec in registry.list_specs("tracker"):
        if registry.is_cached(spec) or (spec is current_spec and checkpoint and Path(checkpoint).exists()):
            ready.append((f"{spec.name} (on disk)", spec.name))
        else:
            later.append((f"{spec.name} (downloads {spec.approx_mb} MB)", spec.name))
    if current_spec is None:
        ready.insert(0, (f"{current} ({'on disk' if Path(current).expanduser().exists() else 'missing'})", current))
    return ready + later


def download_note(name: str, checkpoint: str | None = None) -> str:
    """What choosing tracker `name` means when its weights are not on disk ('' when they are)."""
    if (checkpoint and Path(checkpoint).exists()) or on_disk(name, "tracker"):
        return ""
    spec = registry.find_spec(name, "tracker")
    if spec is None:
        return f"{name} is not on disk and not a tracker samtrack knows: give a registry name or an existing path"
    return (f"{spec.name} is not on disk: tracking downloads it first ({spec.approx_mb} MB); on a machine without "
            f"internet, fetch it elsewhere with `samtrack download {spec.name}`")
