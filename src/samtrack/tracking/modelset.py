"""The models one session uses, taken from the shared pool on first use (or given ready-made)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from samtrack.tracking.settings import MODEL_KINDS, Settings

if TYPE_CHECKING:
    from samtrack.models.pool import ModelPool


class ModelSet:
    """A session's segmenter, tracker, detector and audio tagger: each loaded from the pool the first
    time it is used, under the current settings. A settings change drops the models it concerns
    (their sub-config, the device or the precision changed), so the next use takes them afresh;
    the pool decides whether that means loading other weights (:meth:`Settings.load_key`)."""

    def __init__(self, pool: ModelPool, settings: Settings, **given: Any) -> None:
        unknown = set(given) - set(MODEL_KINDS)
        if unknown:
            raise TypeError(f"unknown model kinds {sorted(unknown)}")
        self.pool = pool
        self.settings = settings
        self._models: dict[str, Any] = {k: v for k, v in given.items() if v is not None}

    def _get(self, kind: str) -> Any:
        model = self._models.get(kind)
        if model is None:
            load = getattr(self.pool, "audio_tagger" if kind == "audio" else kind)
            model = self._models[kind] = load(self.settings)
        return model

    @property
    def segmenter(self) -> Any:
        return self._get("segmenter")

    @property
    def tracker(self) -> Any:
        return self._get("tracker")

    @property
    def detector(self) -> Any:
        return self._get("detector")

    @property
    def audio(self) -> Any:
        return self._get("audio")

    def concept(self, categories: str) -> Any | None:
        """A new concept tracker for `categories` when the tracker detects and tracks by itself (SAM 3),
        else None. Each pass makes its own; the last one is what :meth:`loaded` ("concept") gives."""
        tracker = self.pool.concept_tracker(self.settings, categories)
        self._models["concept"] = tracker
        return tracker

    def tracks_concepts(self) -> bool:
        """Whether the tracker detects and tracks text categories by itself (no model is loaded to tell)."""
        from samtrack.models.trackers import tracks_concepts

        return tracks_concepts(self.settings.tracker.model, self.settings.tracker.checkpoint)

    def loaded(self, kind: str) -> Any | None:
        """The model of `kind` if it is loaded (None: not used yet)."""
        return self._models.get(kind)

    def update(self, settings: Settings) -> set[str]:
        """Use `settings` from now on; returns the kinds whose model was dropped."""
        old, self.settings = self.settings, settings
        everywhere = (old.device, old.precision) != (settings.device, settings.precision)
        dropped = {kind for kind in MODEL_KINDS if everywhere or getattr(old, kind) != getattr(settings, kind)}
        for kind in dropped | ({"concept"} if "tracker" in dropped else set()):
            self._models.pop(kind, None)
        return dropped
