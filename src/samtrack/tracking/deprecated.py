"""Session methods of samtrack 0.1, kept for one release: each warns and calls its replacement."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

from samtrack.errors import PromptError
from samtrack.tracking import prompts as P
from samtrack.tracking.propagation import FrameResult

Progress = Callable[[int, int, dict], None]


class DeprecatedSessionMethods:
    """Mixed into :class:`samtrack.tracking.session.Session`."""

    def _deprecated(self, old: str, new: str) -> None:
        warnings.warn(f"Session.{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3)

    def iter_auto(self, end: int | None = None, *, categories: str | None = None,
                  sounds: list[tuple[str, float]] | None = None) -> Iterator[FrameResult]:
        self._deprecated("iter_auto", "iter_propagate(0, discover=True) (or start=None to resume)")
        start = None if self.passes.timeline is not None and self.passes.timeline.mode == "auto" else 0
        return self.iter_propagate(start, end, discover=True, categories=categories,
                                   sounds=dict(sounds) if sounds else None)

    def run_auto(self, end: int | None = None, *, progress: Progress | None = None, **options: Any) -> None:
        self._deprecated("run_auto", "propagate(0, discover=True)")
        with closing(self.iter_auto(end, **options)) as results:  # type: ignore[type-var]
            for r in results:
                if progress:
                    progress(self.status.done, self.status.total, {"frame": r.index, "objects": len(self.registry)})

    def propagate_backward(self, start: int, end: int = 0, *, objects: list[int] | None = None,
                           progress: Progress | None = None) -> None:
        self._deprecated("propagate_backward", "propagate(start, end, 'backward')")
        self.propagate(start, end, "backward", objects=objects, progress=progress)

    def track_prompts(self, prompts: P.Prompts, end: int | None = None, *, discover: bool = False,
                      categories: str | None = None, progress: Progress | None = None) -> None:
        self._deprecated("track_prompts", "propagate(first prompt frame, prompts=...)")
        if not any(prompts.values()):
            raise PromptError("no prompts given")
        start = min(f for f, items in prompts.items() if items)
        self.propagate(start, end, discover=discover, prompts=prompts, categories=categories, progress=progress)

    def resume(self, prompts: P.Prompts | None = None, *, end: int | None = None,
               progress: Progress | None = None) -> bool:
        self._deprecated("resume", "propagate(None, prompts=...) (see Session.resumable)")
        if self.passes.timeline is None:
            return False
        self.propagate(None, end, prompts=prompts, progress=progress)
        return True
