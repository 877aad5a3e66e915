"""samtrack: segment and track anything in video."""

import warnings
from importlib import import_module
from typing import Any

from samtrack.errors import InputError, ModelError, SamtrackError

__version__ = "0.1.0"

# Public names whose modules pull in torch/transformers load on first use, keeping `import samtrack` fast.
_LAZY = {
    "Segmenter": "samtrack.models.segmenter",
    "Session": "samtrack.tracking.session",
    "Settings": "samtrack.tracking.settings",
    "load_tracker": "samtrack.models.trackers",
    "ModelPool": "samtrack.models.pool",
    "Cancelled": "samtrack.tracking.propagation",
    "export_run": "samtrack.io.export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name == "load_propagator":  # samtrack 0.1's name, kept for one release
        warnings.warn("samtrack.load_propagator is deprecated: use samtrack.load_tracker", DeprecationWarning,
                      stacklevel=2)
        return import_module("samtrack.models.trackers").load_tracker
    raise AttributeError(f"module 'samtrack' has no attribute {name!r}")


__all__ = ["Cancelled", "InputError", "ModelError", "ModelPool", "SamtrackError", "Segmenter", "Session",
           "Settings", "__version__", "export_run", "load_tracker"]
