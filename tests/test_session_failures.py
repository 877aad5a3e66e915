"""A session stays usable, with its work intact, whatever fails before, during or after a pass."""

from __future__ import annotations

import numpy as np
import pytest

from samtrack.errors import ModelError
from samtrack.tracking import prompts as P
from samtrack.tracking.session import Session
from samtrack.tracking.settings import Settings, TrackerSettings


class Boom(RuntimeError):
    pass


class FailingPool:
    """A model pool whose tracker cannot load (as a tracker with no weights on disk, offline)."""

    def tracker(self, settings):
        raise ModelError("weights for r50-deaotl are not in the cache; fetch them with `samtrack download r50-deaotl`")


def _session(blackswan_small, tmp_path, pool) -> Session:
    frames, swan = blackswan_small
    s = Session(frames, tmp_path / "run", Settings(tracker=TrackerSettings("r50-deaotl")), models=pool)
    s.add_object(0, mask=swan, label="swan")
    return s


def test_a_tracker_that_fails_to_load_leaves_the_session_usable(blackswan_small, tmp_path):
    _, swan = blackswan_small
    s = _session(blackswan_small, tmp_path, FailingPool())
    with pytest.raises(ModelError, match="samtrack download"):
        for _ in s.iter_propagate(0):
            pass
    assert s.status.state == "idle"
    # every action still works, and the work is intact
    second = s.add_object(2, mask=np.roll(swan, 3, axis=1), label="again")
    assert s.undo() == "add object" and second not in s.objects
    assert (s.mask(0) == 1).sum() == swan.sum()
    with pytest.raises(ModelError):
        s.propagate(0)
    assert s.status.state == "idle"
    s.close()


def test_a_tracker_that_fails_mid_pass_keeps_the_frames_done(blackswan_small, tmp_path):
    frames, swan = blackswan_small

    class BreaksOnFrame3:
        precision = "fp32"
        n = 0

        def reset(self):
            pass

        def add_reference(self, frame, ids):
            self.ids = ids

        def track(self, frame, return_logits=False):
            self.n += 1
            if self.n == 3:
                raise Boom("out of memory")
            return self.ids

        def update_memory(self, ids):
            pass

    s = Session(frames, tmp_path / "run", Settings(), tracker=BreaksOnFrame3())
    s.add_object(0, mask=swan)
    with pytest.raises(Boom):
        s.propagate(0)
    assert s.status.state == "idle"
    assert [i for i in range(len(s)) if s.mask(i).any()] == [0, 1, 2]
    s.add_object(4, mask=swan)  # still usable
    s.close()


def test_a_full_disk_when_a_pass_saves_its_state_says_what_is_saved(blackswan_small, tmp_path, monkeypatch):
    import errno

    from samtrack.errors import OutputError
    from samtrack.tracking.runrecord import RunState

    frames, swan = blackswan_small

    class Still:
        precision = "fp32"

        def reset(self):
            pass

        def add_reference(self, frame, ids):
            self.ids = ids

        def track(self, frame, return_logits=False):
            return self.ids

        def update_memory(self, ids):
            pass

    s = Session(frames, tmp_path / "run", Settings(), tracker=Still())
    s.add_object(0, mask=swan)
    real = RunState.save

    def full_at_the_end(self, registry, timeline, finalized):
        if timeline is not None and timeline.cursor == 5:
            raise OutputError(f"cannot write {self.out_dir}/session.json: the disk is full", errno.ENOSPC)
        real(self, registry, timeline, finalized)

    monkeypatch.setattr(RunState, "save", full_at_the_end)
    with pytest.raises(OutputError, match=r"frames 0-5 of 0-5 are saved .* --resume"):
        s.propagate(0)
    assert s.status.state == "idle"
    monkeypatch.setattr(RunState, "save", real)
    s.close()


def test_samtrack_0_1_names_still_work_and_warn(blackswan_small, tmp_path):
    import samtrack

    frames, swan = blackswan_small

    class Still:
        precision = "fp32"

        def reset(self):
            pass

        def add_reference(self, frame, ids):
            self.ids = ids

        def track(self, frame, return_logits=False):
            return self.ids

        def update_memory(self, ids):
            pass

    with pytest.warns(DeprecationWarning, match="load_tracker"):
        assert samtrack.load_propagator is samtrack.load_tracker
    s = Session(frames, tmp_path / "run", Settings(), tracker=Still())
    s.add_object(0, mask=swan)
    s.add_object(3, mask=swan)
    with pytest.warns(DeprecationWarning, match="propagate"):
        s.track_prompts({0: [P.make_prompt(0, mask=swan)]}, end=4)
    with pytest.warns(DeprecationWarning, match="backward"):
        s.propagate_backward(3, objects=[3])
    with pytest.warns(DeprecationWarning, match="resume"):
        assert s.resume()
    assert [i for i in range(len(s)) if s.mask(i).any()] == [0, 1, 2, 3, 4]
    s.close()
