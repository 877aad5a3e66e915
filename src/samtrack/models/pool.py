"""Models loaded once per process and shared by every session (browser tabs, batch videos, the CLI).

Weights are read-only at inference, so one copy serves any number of sessions, from any number of
threads. What belongs to one video lives apart, in the objects the pool hands out: each call to
:meth:`ModelPool.tracker` returns a new tracker with its own memory, each call to
:meth:`ModelPool.segmenter` a new segmenter with its own embedding cache (both over the shared
weights). Detectors and audio taggers keep no per-video state and are shared as they are. Models are
keyed by ``Settings.load_key``: the settings that decide their weights.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from samtrack.models.segmenter import Segmenter
    from samtrack.models.tracker import Tracker
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

        s = settings
        model = self._get(s.load_key("segmenter"),
                          lambda: load_prompt_model(s.segmenter.model, s.device, s.precision))
        return Segmenter(model)

    def tracker(self, settings: Settings) -> Tracker:
        """A new tracker (empty memory) over the shared tracker weights."""
        from samtrack.models.tracker import MemoryOptions
        from samtrack.models.trackers import load_tracker_weights

        s, t = settings, settings.tracker
        weights = self._get(s.load_key("tracker"),
                            lambda: load_tracker_weights(t.model, t.checkpoint, s.device, s.precision))
        return weights.tracker(MemoryOptions(t.long_term_mem_gap, t.max_len_long_term, t.num_memory_frames,
                                             t.max_conditioning_frames))

    def concept_tracker(self, settings: Settings, categories: str) -> Any:
        """A new concept tracker (SAM 3 detect-and-track of `categories`) over the shared weights, or None
        when the settings' tracker cannot detect by itself."""
        from samtrack.models.trackers import load_concept_weights, tracks_concepts

        s, t = settings, settings.tracker
        if not tracks_concepts(t.model, t.checkpoint):
            return None
        from samtrack.models.sam3.concept import ConceptTracker

        weights = self._get(("concept", *s.load_key("tracker")[1:]),
                            lambda: load_concept_weights(t.model, t.checkpoint, s.device, s.precision))
        return ConceptTracker(weights, categories, detection_threshold=s.detector.score_threshold,
                              mask_threshold=s.detector.mask_threshold, max_objects=s.max_obj_num)

    def detector(self, settings: Settings) -> Any:
        """The shared text detector, Grounding DINO or SAM 3 (it keeps no per-frame state)."""
        from samtrack.models.detectors import load_detector

        s = settings
        return self._get(s.load_key("detector"), lambda: load_detector(s.detector.model, s.device, s.precision))

    def audio_tagger(self, settings: Settings) -> Any:
        """The shared AST audio tagger."""
        from samtrack.models.audio import AudioTagger

        s = settings
        return self._get(s.load_key("audio"), lambda: AudioTagger.load(s.audio.model, device=s.device))
