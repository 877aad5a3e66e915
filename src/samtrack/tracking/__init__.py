"""The session engine: objects, prompts, propagation, discovery, the mask store (see session.py)."""

from samtrack.tracking.propagation import Cancelled, FrameResult

__all__ = ["Cancelled", "FrameResult"]
