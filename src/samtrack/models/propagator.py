"""Deprecated names (samtrack 0.1): the tracker protocol is :class:`samtrack.models.tracker.Tracker` and
the factory :func:`samtrack.models.trackers.load_tracker`. Kept for one release."""

from __future__ import annotations

import warnings

from samtrack.models.tracker import Tracker as Propagator
from samtrack.models.trackers import load_tracker, load_tracker_weights

warnings.warn("samtrack.models.propagator is deprecated: use samtrack.models.tracker (Tracker) and "
              "samtrack.models.trackers (load_tracker)", DeprecationWarning, stacklevel=2)

load_propagator = load_tracker

__all__ = ["Propagator", "load_propagator", "load_tracker", "load_tracker_weights"]
