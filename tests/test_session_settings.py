"""Session.update_settings: new settings and models mid-session, objects and masks kept."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEAOT_FIXTURES, davis_frames
from PIL import Image

from samtrack.errors import InputError
from samtrack.models.pool import ModelPool
from samtrack.tracking.session import Session
from samtrack.tracking.settings import Settings


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    out = tmp_path_factory.mktemp("frames")
    for p in sorted(davis_frames("blackswan").glob("*.jpg"))[:4]:
        Image.open(p).resize((212, 120)).save(out / p.name)
    return out


def test_update_settings_swaps_the_tracker_and_keeps_objects(frames, tiny_sam, tmp_path):
    deaot_t = Settings().updated({"segmenter.model": tiny_sam, "tracker.model": "deaot-t",
                                "tracker.checkpoint": str(DEAOT_FIXTURES / "deaott.pth")})
    s = Session(frames, tmp_path / "run", deaot_t, models=ModelPool())
    box = np.zeros((120, 212), bool)
    box[40:80, 60:120] = True
    obj = s.add_object(0, mask=box, label="patch")
    list(s.iter_propagate(0, 1))
    first = s.models.tracker
    held = s.mask(1).copy()
    r50 = deaot_t.updated({"tracker.model": "r50-deaotl", "max_obj_num": 1,
                           "tracker.checkpoint": str(DEAOT_FIXTURES / "r50_deaotl.pth")})
    s.update_settings(r50)
    assert s.settings.tracker.model == "r50-deaotl" and s.objects[obj].label == "patch"
    assert np.array_equal(s.mask(1), held) and (s.mask(0) == obj).sum() == box.sum()
    with pytest.raises(InputError, match="max_obj_num is 1"):
        s.add_object(0, mask=~box)
    results = list(s.iter_propagate(0, 3))  # a new pass with the new tracker
    assert [r.index for r in results][-1] == 3 and s.models.tracker is not first
    s.close()
