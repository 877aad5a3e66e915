"""The session engine as a web app or a batch runner drives it: streaming, cancel, shared models, close."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEAOT_FIXTURES, REPO

from samtrack.errors import InputError
from samtrack.io.sources import open_source
from samtrack.models.pool import ModelPool
from samtrack.tracking import Cancelled, FrameResult
from samtrack.tracking.history import History
from samtrack.tracking.objects import ObjectRegistry
from samtrack.tracking.session import Session
from samtrack.tracking.settings import Settings

N_FRAMES = 6


@pytest.fixture(scope="module")
def clip(blackswan_small) -> tuple[Path, np.ndarray]:
    return blackswan_small


def deaot_settings(**kw) -> Settings:
    return Settings(**kw).updated({"tracker.model": "deaot-t", "tracker.checkpoint": str(DEAOT_FIXTURES / "deaott.pth")})


def masks_on_disk(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "masks").glob("*.png"))}


def test_streamed_results_equal_the_stored_masks_and_cancel_resumes_exactly(clip, tmp_path):
    frames, swan = clip
    pool = ModelPool()
    with Session(frames, tmp_path / "full", deaot_settings(), models=pool) as full:
        full.add_object(0, mask=swan, label="swan")
        results = list(full.iter_propagate(0))
    assert [r.index for r in results] == list(range(N_FRAMES))
    assert all(isinstance(r, FrameResult) and r.objects == tuple(np.unique(r.ids[r.ids > 0])) for r in results)
    for r in results:
        assert np.array_equal(full.mask(r.index), r.ids)

    with Session(frames, tmp_path / "part", deaot_settings(), models=pool) as part:
        part.add_object(0, mask=swan, label="swan")
        seen = []
        with pytest.raises(Cancelled):
            for r in part.iter_propagate(0):
                seen.append(r.index)
                if r.index == 2:
                    part.cancel()  # as a web app's Stop button would, from any thread
        assert seen == [0, 1, 2] and part.status.state == "cancelled" and part.cursor == 2
        part.propagate(2)  # continues with the tracker's memory
    assert masks_on_disk(tmp_path / "part") == masks_on_disk(tmp_path / "full")
    assert len(pool.loaded()) == 1  # one tracker's weights, shared by both sessions


def test_changes_wait_for_a_running_propagation(clip, tmp_path):
    frames, swan = clip
    with Session(frames, tmp_path / "run", deaot_settings()) as s:
        s.add_object(0, mask=swan)
        results = s.iter_propagate(0)
        next(results)
        assert s.status.state == "running"
        with pytest.raises(InputError, match="propagation is running"):
            s.add_object(3, mask=swan)
        with pytest.raises(InputError, match="propagation is running"):
            s.iter_propagate(0)
        results.close()  # a consumer that stops early leaves the session usable
        assert s.status.state == "idle"
        s.add_object(3, mask=swan)


def test_close_closes_the_frame_source(clip, tmp_path):
    frames, _ = clip
    source = open_source(frames)
    closed = []
    source.close = lambda: closed.append(True)
    s = Session(source, tmp_path / "run")
    s.close()
    s.close()  # idempotent
    assert closed == [True]
    assert s.status.state == "closed"


def test_undo_history_is_bounded():
    registry = ObjectRegistry()
    masks: dict[int, np.ndarray | None] = {}
    history = History((4, 4), limit=3)
    for n in range(5):
        with history.record(f"add {n}", [0], registry, masks.get, masks.__setitem__):
            registry.add(None, 0, {"kind": "mask", "frame": 0})
    names = []
    while (name := history.undo(registry, masks.__setitem__)) is not None:
        names.append(name)
    assert names == ["add 4", "add 3", "add 2"]
    assert sorted(registry) == [1, 2]


def test_loading_a_deaot_tracker_imports_no_transformers():
    code = ("import sys; from samtrack.models.trackers import load_tracker; "
            f"load_tracker('deaot-t', checkpoint={str(DEAOT_FIXTURES / 'deaott.pth')!r}); "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_closing_a_session_stops_its_running_propagation(clip, tmp_path):
    frames, swan = clip
    s = Session(frames, tmp_path / "run", deaot_settings())
    s.add_object(0, mask=swan)
    results = s.iter_propagate(0)
    next(results), next(results)
    s.close()  # e.g. the browser tab went away while its propagation was between frames
    with pytest.raises(Cancelled):
        next(results)
    assert s.status.state == "closed"
    assert len(masks_on_disk(tmp_path / "run")) == 2
