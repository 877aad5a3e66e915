"""samtrack: segment and track anything in video."""

from samtrack.errors import InputError, ModelError, SamtrackError

__version__ = "0.1.0"

__all__ = ["InputError", "ModelError", "SamtrackError", "__version__"]
