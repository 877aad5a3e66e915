"""samtrack: segment and track anything in video."""

from importlib import import_module
from typing import Any

from samtrack.errors import InputError, ModelError, SamtrackError

__version__ = "0.1.0"

# Public names whose modules pull in torch/transformers load on first use, keeping `import samtrack` fast.
_LAZY = {
    "Segmenter": "samtrack.models.segmenter",
    "ClickState": "samtrack.models.segmenter",
    "Session": "samtrack.tracking.session",
    "Settings": "samtrack.tracking.settings",
    "load_tracker": "samtrack.models.propagator",
    "load_propagator": "samtrack.models.propagator",
    "ModelPool": "samtrack.models.pool",
    "Cancelled": "samtrack.tracking.propagation",
    "export_run": "samtrack.io.export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samtrack' has no attribute {name!r}")


__all__ = ["Cancelled", "ClickState", "InputError", "ModelError", "ModelPool", "SamtrackError", "Segmenter", "Session",
           "Settings", "__version__", "export_run", "load_propagator", "load_tracker"]
