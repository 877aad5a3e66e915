"""The frame on screen, encoded in the background: a click then finds the frame's image embedding ready
and only runs SAM's small mask decoder.

One worker thread serves the whole app, so at most one frame is encoded at a time. Each tab has at most
one request, for the frame it shows: a new frame replaces it (the tab moved on), and a frame is encoded
only after it has stayed on screen for `delay` seconds (stepping or scrubbing through frames encodes
none of them). An encode that has started runs to its end (a forward pass cannot be interrupted), but
one whose tab has moved on meanwhile is never started. The worker also waits while any heavy job of
the app runs (tracking, segment everything, text: `Heavy`), so heavy work still runs one job at a time.

Thread safety: a session's segmenter keeps one frame's embedding, so every use of a tab's models
(prompts, settings changes and this encoder) holds the tab's `models_lock`; the encoder only tries it,
and leaves the frame to a prompt that holds it. It never takes the tab's `lock`, so navigation is never
kept waiting by an encode. The segmenter is loaded here too when its weights are on disk (never
downloaded in the background), so the first click does not wait for the model either.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from samtrack.app.workspace import Workspace

log = logging.getLogger(__name__)


class Heavy:
    """Counts the app's heavy jobs that are running (tracking, segment everything, text, sound, outputs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1


class Prefetcher:
    """Encodes the frame each tab shows, in the background (see the module docstring).

    `ready(session)` says whether the session's segmenter may be used here (loaded, or its weights on
    disk); `done(ws, frame, seconds)` is told of every encode (for tests and benchmarks).
    """

    def __init__(self, heavy: Heavy, ready: Callable[[Any], bool], delay: float = 0.25,
                 done: Callable[[Workspace, int, float], None] | None = None) -> None:
        self.heavy, self.ready, self.delay, self.done = heavy, ready, delay, done
        self._pending: dict[int, tuple[Workspace, Any, int, float]] = {}  # id(ws) -> (ws, session, frame, due)
        self._wake = threading.Condition()
        self._stopped = False
        self._encoding = False
        self._thread = threading.Thread(target=self._run, name="samtrack-prefetch", daemon=True)
        self._thread.start()

    def request(self, ws: Workspace) -> None:
        """Encode the frame `ws` shows once it has stayed there `delay` seconds (replacing any request
        of this tab)."""
        if ws.session is None or ws.busy:
            return
        with self._wake:
            self._pending[id(ws)] = (ws, ws.session, ws.frame, time.monotonic() + self.delay)
            self._wake.notify()

    @property
    def idle(self) -> bool:
        """Whether no request waits and no encode runs."""
        with self._wake:
            return not self._pending and not self._encoding

    def forget(self, ws: Workspace) -> None:
        with self._wake:
            self._pending.pop(id(ws), None)

    def close(self) -> None:
        with self._wake:
            self._stopped = True
            self._pending.clear()
            self._wake.notify()
        self._thread.join(timeout=30)

    def _next(self) -> tuple[Workspace, Any, int] | None:
        """The next request whose time has come (None: stopped)."""
        with self._wake:
            while not self._stopped:
                timeout = None
                if self._pending:
                    key, (ws, session, frame, due) = min(self._pending.items(), key=lambda item: item[1][3])
                    wait = due - time.monotonic()
                    if wait <= 0 and self.heavy.running == 0:
                        del self._pending[key]
                        self._encoding = True
                        return ws, session, frame
                    timeout = wait if wait > 0 else self.delay  # a heavy job ends without telling: look again
                self._wake.wait(timeout)
        return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            try:
                self._encode(*item)
            finally:
                with self._wake:
                    self._encoding = False

    def _encode(self, ws: Workspace, session: Any, frame: int) -> None:
        if not ws.models_lock.acquire(blocking=False):
            return  # a prompt is using the segmenter now: it encodes what it needs itself
        try:
            if ws.session is not session or ws.frame != frame or ws.busy or not self.ready(session):
                return  # the tab moved on, or this frame is left to the click
            started = time.perf_counter()
            session.models.segmenter.prepare(session.frame(frame))
            if self.done is not None:
                self.done(ws, frame, time.perf_counter() - started)
        except Exception:  # a background nicety: the click reports any real problem
            log.debug("background encode of frame %d failed", frame, exc_info=True)
        finally:
            ws.models_lock.release()
