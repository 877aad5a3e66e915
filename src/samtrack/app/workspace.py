"""Per-browser-session state: one `Workspace` per tab, kept by `Workspaces` under Gradio's session hash.

A workspace owns a temporary folder (uploads, the run directory) and the tracking session of the video
open in that tab. Models are not here: every session borrows them from the app's shared `ModelPool`.
The folder is deleted when the tab closes (`Workspaces.drop`, wired to `demo.unload`). When the app owns
its Gradio upload cache (`AppConfig.upload_cache`), `UploadCacheLimit` keeps that folder under a size:
Gradio accepts uploads without a browser session, so nothing else bounds it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samtrack.errors import InputError
from samtrack.tracking.settings import Settings


@dataclass
class AppConfig:
    """What `samtrack app` was started with."""

    settings: Settings = field(default_factory=Settings)
    max_upload_bytes: int = 2 << 30
    max_frames: int = 10_000
    work_root: Path | None = None  # None: a fresh folder in the system temp dir
    # The app's own Gradio upload cache (GRADIO_TEMP_DIR; None: Gradio's shared default, left alone). When
    # set, an upload's cached copy is deleted once its tab has opened it, and the folder is kept under
    # `max_cache_bytes` (None: ZIP_EXPANSION × max_upload_bytes), oldest files first.
    upload_cache: Path | None = None
    max_cache_bytes: int | None = None
    # Example inputs (videos and zips of frames) offered beside the synthetic clip; None: the folder
    # $SAMTRACK_EXAMPLES names, else <model cache>/examples when it exists (see `examples.default_folder`).
    examples: Path | None = None
    # Encode the frame on screen in the background, so a click finds its image embedding ready.
    prefetch: bool = True

    @property
    def cache_limit(self) -> int:
        from samtrack.app.uploads import ZIP_EXPANSION

        return self.max_cache_bytes if self.max_cache_bytes is not None else ZIP_EXPANSION * self.max_upload_bytes


@dataclass
class Workspace:
    """What one browser tab is working on."""

    folder: Path
    settings: Settings
    session: Any = None  # samtrack.tracking.Session of the open video
    name: str = ""  # the open video's name as the user knows it (their file's name)
    reopen: tuple[Path, float | None] | None = None  # (input, fps): what Reset opens again
    frame: int = 0  # the frame on screen: the one source of truth for "this frame"
    selected: int | None = None  # the object prompts refine (None: the next prompt makes a new one)
    points: list[tuple[float, float]] = field(default_factory=list)  # clicks on the selected object here
    labels: list[int] = field(default_factory=list)
    corner: tuple[float, float] | None = None  # first corner of a box being drawn
    box: tuple[float, float, float, float] | None = None  # the box prompt last applied here (drawn)
    brush_frame: int | None = None  # the frame the brush canvas was loaded with
    segments: list[int] = field(default_factory=list)  # segment-everything results awaiting keep/drop
    heard: list[tuple[str, float]] = field(default_factory=list)  # sound labels of the last Listen
    present: dict[int, frozenset[int]] = field(default_factory=dict)  # frame -> object ids it shows
    names: dict[str, str] = field(default_factory=dict)  # server path -> what messages call it
    error: str = ""  # the last error shown to this tab
    busy: bool = False  # a propagation of this tab is running
    opened: int = 0  # videos opened so far (each gets its own run folder)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Held by whatever uses or changes the session's models (prompts, settings, the background encoder):
    # a segmenter keeps one frame's embedding, so two threads must not encode through it at once.
    models_lock: threading.Lock = field(default_factory=threading.Lock)

    def require_session(self) -> Any:
        if self.session is None:
            raise InputError("open a video first (upload one, or open an example)")
        return self.session

    def require_idle(self) -> Any:
        s = self.require_session()
        if self.busy:
            raise InputError("tracking is running: press Stop first")
        return s

    def clear_prompt(self) -> None:
        """Forget the clicks, box and box corner in progress (the next click starts afresh)."""
        self.points, self.labels, self.corner, self.box = [], [], None, None

    def note(self, index: int, ids: Any) -> None:
        """Record which objects frame `index` shows (for the object list's first and last frame)."""
        self.present[index] = frozenset(int(i) for i in ids)

    def spans(self) -> dict[int, tuple[int, int]]:
        """Object id -> (first, last) frame it is shown on, of the frames this tab has seen written."""
        spans: dict[int, tuple[int, int]] = {}
        for index, ids in self.present.items():
            for obj_id in ids:
                first, last = spans.get(obj_id, (index, index))
                spans[obj_id] = (min(first, index), max(last, index))
        return spans

    def forget(self, obj_id: int) -> None:
        """An object was removed from every frame."""
        self.present = {i: ids - {obj_id} for i, ids in self.present.items()}

    def close_session(self) -> None:
        with self.models_lock:  # lets a background encode of this session finish first
            if self.session is not None:
                self.session.close()
                self.session = None
        self.selected, self.segments, self.present, self.frame, self.heard = None, [], {}, 0, []
        self.brush_frame, self.name, self.reopen = None, "", None
        self.clear_prompt()


class UploadCacheLimit:
    """Keeps a folder (the app's Gradio upload cache) under `max_bytes`, deleting its oldest files first,
    every `interval` seconds on a daemon thread (`start`/`stop`) or when `sweep` is called."""

    def __init__(self, folder: Path, max_bytes: int, interval: float = 5.0) -> None:
        self.folder, self.max_bytes, self.interval = Path(folder), max_bytes, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> int:
        """Delete the oldest files until the folder holds at most `max_bytes`; return the bytes freed."""
        files = []
        for path in self.folder.rglob("*"):
            try:
                info = path.lstat()
            except OSError:
                continue  # gone meanwhile
            if not path.is_dir() or path.is_symlink():
                files.append((info.st_mtime, info.st_size, path))
        total, freed = sum(size for _, size, _ in files), 0
        for _, size, path in sorted(files):
            if total - freed <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            freed += size
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # Gradio's folder for that upload, once empty
        return freed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):
                self.sweep()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="samtrack-upload-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class Workspaces:
    """Every open tab's workspace, by Gradio session hash."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        root = config.work_root
        self.root = Path(tempfile.mkdtemp(prefix="samtrack-app-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._items: dict[str, Workspace] = {}
        self._lock = threading.Lock()
        self.cache: UploadCacheLimit | None = None
        if config.upload_cache is not None:
            self.cache = UploadCacheLimit(config.upload_cache, config.cache_limit)
            self.cache.start()

    def get(self, key: str) -> Workspace:
        with self._lock:
            ws = self._items.get(key)
            if ws is None:
                folder = self.root / uuid.uuid4().hex  # never a client-chosen name
                folder.mkdir()
                ws = self._items[key] = Workspace(folder, self.config.settings)
            return ws

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def drop(self, key: str) -> None:
        """Stop the tab's work, close its session and delete its files."""
        with self._lock:
            ws = self._items.pop(key, None)
        if ws is None:
            return
        if ws.session is not None and ws.busy:
            ws.session.cancel()  # stops within one frame; wait for the tab's loop to let go
            deadline = time.monotonic() + 10
            while ws.busy and time.monotonic() < deadline:
                time.sleep(0.05)
        with ws.lock:
            ws.close_session()
        shutil.rmtree(ws.folder, ignore_errors=True)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.stop()
        for key in list(self._items):
            self.drop(key)
        if self.config.work_root is None:
            shutil.rmtree(self.root, ignore_errors=True)
