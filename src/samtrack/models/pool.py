"""Models loaded once per process and shared by every session (browser tabs, batch videos, the CLI).

Weights are read-only at inference, so one copy serves any number of sessions, from any number of
threads. What belongs to one video lives apart, in the objects the pool hands out: each call to
:meth:`ModelPool.tracker` returns a new propagator with its own memory, each call to
:meth:`ModelPool.segmenter` a new segmenter with its own embedding cache (both over the shared
weights). Detectors and audio taggers keep no per-video state and are shared as they are.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from samtrack.models.grounding import Detector
    from samtrack.models.propagator import Propagator
    from samtrack.models.segmenter import Segmenter
    from samtrack.tracking.settings import Settings


class ModelPool:
    """Loads each model the first time a session asks for it; later requests reuse it. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._models: dict[Hashable, Any] = {}

    def _get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._models:
                return self._models[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one thread loads a model; others asking for the same one wait for it
            with self._lock:
                if key in self._models:
                    return self._models[key]
            model = load()
            with self._lock:
                self._models[key] = model
                self._loading.pop(key, None)
            return model

    def loaded(self) -> list[Hashable]:
        """Keys of the models loaded so far (kind first)."""
        with self._lock:
            return list(self._models)

    def segmenter(self, settings: Settings) -> Segmenter:
        """A segmenter over the shared weights, with its own embedding cache (one per session)."""
        from samtrack.models.sam.loading import load_prompt_model
        from samtrack.models.segmenter import Segmenter

        key = ("segmenter", settings.segmenter, settings.device, settings.precision)
        model = self._get(key, lambda: load_prompt_model(settings.segmenter, settings.device, settings.precision))
        return Segmenter(model)

    def tracker(self, settings: Settings) -> Propagator:
        """A new propagator (empty memory) over the shared tracker weights."""
        from samtrack.models.propagator import load_tracker_weights

        s = settings
        key = ("tracker", s.tracker, s.tracker_checkpoint, s.device, s.precision)
        weights = self._get(key, lambda: load_tracker_weights(s.tracker, s.tracker_checkpoint, s.device,
                                                              s.precision))
        return weights.propagator(long_term_mem_gap=s.long_term_mem_gap, max_len_long_term=s.max_len_long_term,
                                  num_memory_frames=s.num_memory_frames,
                                  max_conditioning_frames=s.max_conditioning_frames)

    def detector(self, settings: Settings) -> Detector:
        """The shared Grounding DINO detector (it keeps no per-frame state)."""
        from samtrack.models.grounding import Detector

        key = ("detector", settings.detector, settings.device)
        return self._get(key, lambda: Detector.load(settings.detector, device=settings.device))

    def audio_tagger(self, settings: Settings) -> Any:
        """The shared AST audio tagger."""
        from samtrack.models.audio import AudioTagger

        key = ("audio", settings.audio_model, settings.device)
        return self._get(key, lambda: AudioTagger.load(settings.audio_model, device=settings.device))
