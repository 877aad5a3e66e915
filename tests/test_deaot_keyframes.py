"""DeAOT with nothing to track at first (black first frame, fade-in, auto mode that finds nothing):
objects that appear later get a full reference, as SAM-Track's DeAOTInferEngine gives them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import DAVIS, DEAOT_FIXTURES, davis_frames
from PIL import Image

from samtrack import cli
from samtrack.models.deaot.engine import Engine
from samtrack.models.deaot.preprocess import normalize, resize_frame, resize_mask
from samtrack.models.trackers import load_tracker

CKPT = DEAOT_FIXTURES / "deaott.pth"
SIZE = (120, 213)  # blackswan 480p / 4


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [np.array(Image.open(p).convert("RGB").resize(SIZE[::-1], Image.BILINEAR))
            for p in sorted(davis_frames("blackswan").glob("*.jpg"))[:6]]


@pytest.fixture(scope="module")
def swan_ids() -> np.ndarray:
    """The swan of frame 3 as two objects: left half id 1, right half id 2."""
    gt = np.array(Image.open(DAVIS / "Annotations" / "480p" / "blackswan" / "00003.png")
                  .resize(SIZE[::-1], Image.NEAREST)) > 0
    ids = np.zeros(SIZE, np.uint8)
    cols = np.nonzero(gt.any(axis=0))[0]
    middle = (cols[0] + cols[-1]) // 2
    ids[:, :middle][gt[:, :middle]] = 1
    ids[:, middle:][gt[:, middle:]] = 2
    return ids


@torch.inference_mode()
def test_objects_after_an_empty_first_reference_get_a_full_reference(frames, swan_ids):
    trk = load_tracker("deaot-t", CKPT, precision="fp32")
    empty = np.zeros(SIZE, np.uint8)
    trk.add_reference(frames[0], empty)
    for f in frames[1:3]:
        ids = trk.track(f)
        assert not ids.any(), "objects tracked although none was referenced"
        trk.update_memory(ids)
    trk.track(frames[3])  # key frame: tracked, then referenced with the objects found there
    trk.add_reference(frames[3], swan_ids)
    assert trk.engines[0].long_term_frames == 2  # frame 0's (empty) reference and frame 3's
    ours = []
    for f in frames[4:]:
        ids = trk.track(f)
        ours.append((ids, trk.last_native_logits[0].clone()))
        trk.update_memory(ids)

    # The same calls with SAM-Track's semantics, engine by engine: an engine whose object count grows
    # (0 -> 2 here) runs the full reference step; memory updates take the tracker's own labels.
    net, size = trk.net, trk.input_size
    engine = Engine(net, 9999, 9999)

    def enc(frame):
        return net.encode_image(normalize(resize_frame(frame, size)))

    def mask(ids):
        return resize_mask(torch.from_numpy(ids).float()[None, None], size)

    engine.add_reference(enc(frames[0]), mask(empty), 0)
    for f in frames[1:3]:
        engine.propagate(enc(f))
        engine.update_memory(mask(empty))
    engine.propagate(enc(frames[3]))
    engine.add_reference(enc(frames[3]), mask(swan_ids), 2)
    for f, (ids, logits) in zip(frames[4:], ours):
        engine.propagate(enc(f))
        torch.testing.assert_close(engine.decode(), logits, rtol=0, atol=1e-5)
        engine.update_memory(mask(ids))


def test_auto_mode_that_finds_nothing_runs_to_the_end(blackswan_mp4, tiny_sam, tmp_path):
    """`samtrack track blackswan.mp4 --auto` with a random SAM (it finds nothing at SAM-Track's
    thresholds) and DeAOT-T: empty masks, no crash."""
    out = tmp_path / "run"
    code = cli.main(["--quiet", "track", str(blackswan_mp4), "--out", str(out), "--auto", "--segmenter", tiny_sam,
                     "--tracker", "deaot-t", "--checkpoint", str(CKPT), "--end", "2", "--sam-gap", "2",
                     "--points-per-side", "4", "--no-video", "--no-gif"])
    assert code == 0
    assert json.loads((out / "objects.json").read_text()) == {}
    assert (out / "masks").is_dir() and len(list((out / "masks").glob("*.png"))) == 3  # frames 0-2, none past --end
