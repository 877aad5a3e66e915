"""Behaviour of the DeAOT tracker users rely on (small frames, the DeAOT-T fixture checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DAVIS, DEAOT_FIXTURES
from PIL import Image

import samtrack
from samtrack.errors import InputError, ModelError
from samtrack.models.deaot.tracker import DeAOTTracker, channel_argmax
from samtrack.models.trackers import load_tracker

CKPT = DEAOT_FIXTURES / "deaott.pth"
SIZE = (96, 160)  # network input 97 x 161, encoder grid 7 x 11: fast


def _frames(n: int) -> list[np.ndarray]:
    seq = DAVIS / "JPEGImages" / "480p" / "blackswan"
    return [np.array(Image.open(seq / f"{i:05d}.jpg").convert("RGB").resize(SIZE[::-1])) for i in range(n)]


def _grid_mask(n_objects: int) -> np.ndarray:
    """Vertical stripes, ids 1..n_objects."""
    mask = np.zeros(SIZE, np.uint8)
    cols = np.array_split(np.arange(SIZE[1]), n_objects)
    for i, c in enumerate(cols):
        mask[10:, c] = i + 1
    return mask


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return _frames(6)


@pytest.fixture()
def tracker() -> DeAOTTracker:
    torch.set_num_threads(2)
    return load_tracker("deaott", CKPT, precision="fp32")


def test_public_entry_point_and_outputs(tracker: DeAOTTracker, frames: list[np.ndarray]) -> None:
    assert samtrack.load_tracker is load_tracker
    tracker.add_reference(frames[0], _grid_mask(2))
    ids, logits = tracker.track(frames[1], return_logits=True)
    assert ids.dtype == np.uint8 and ids.shape == SIZE
    assert logits.dtype == np.float32 and logits.shape == (3, *SIZE)
    assert np.array_equal(ids, logits.argmax(0))
    assert np.array_equal(tracker.track(frames[1]), ids)  # tracking does not change the memory
    tracker.update_memory(ids)
    assert tracker.engines[0].frame_step == 2


def test_more_than_ten_objects_share_one_encoding(tracker: DeAOTTracker, frames: list[np.ndarray],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls, adapted = [], []
    encode, adapt = tracker.net.encode_image, tracker.net.decoder.adapt_shortcuts
    monkeypatch.setattr(tracker.net, "encode_image", lambda img: calls.append(1) or encode(img))
    monkeypatch.setattr(tracker.net.decoder, "adapt_shortcuts", lambda feats: adapted.append(1) or adapt(feats))
    tracker.add_reference(frames[0], _grid_mask(23))
    assert [e.obj_nums for e in tracker.engines] == [10, 10, 3]
    ids, logits = tracker.track(frames[1], return_logits=True)
    # one encoding for the reference, one for the tracked frame; the 3 engines decode with the
    # frame's shared decoder shortcuts
    assert len(calls) == len(adapted) == 2
    assert logits.shape == (24, *SIZE)
    assert ids.max() <= 23 and np.array_equal(ids, logits.argmax(0))
    tracker.update_memory(ids)
    # each engine's native logits fill the slots it does not use
    native = tracker.last_native_logits[2][0]
    assert (native[4:] < -1e9).all() and (native[:4] > -1e9).all()


def test_up_to_255_objects(tracker: DeAOTTracker, frames: list[np.ndarray]) -> None:
    mask = np.zeros(SIZE, np.uint8)
    mask.reshape(-1)[: 255 * 40: 40] = np.arange(1, 256)
    tracker.add_reference(frames[0], mask)
    assert len(tracker.engines) == 26 and tracker.engines[-1].obj_nums == 5
    _, logits = tracker.track(frames[1], return_logits=True)
    assert logits.shape == (256, *SIZE)


def test_objects_added_on_a_later_reference(tracker: DeAOTTracker, frames: list[np.ndarray]) -> None:
    tracker.add_reference(frames[0], _grid_mask(2))
    for f in frames[1:3]:
        tracker.update_memory(tracker.track(f))
    ids = tracker.track(frames[3])
    keyframe = ids.copy()
    keyframe[:20, :30] = 3
    tracker.add_reference(frames[3], keyframe)  # object 3 joins: full reference step
    engine = tracker.engines[0]
    assert engine.obj_nums == 3 and engine.frame_step == 3 and engine.last_mem_step == 3
    assert engine.long_term_frames == 2
    _, logits = tracker.track(frames[4], return_logits=True)
    assert logits.shape[0] == 4
    # eleven objects: the first engine grows to 10 (full reference), a second engine joins
    tracker.add_reference(frames[4], _grid_mask(11))
    assert [e.obj_nums for e in tracker.engines] == [10, 1]
    assert tracker.engines[1].frame_step == 0 and tracker.engines[0].long_term_frames == 3
    tracker.update_memory(tracker.track(frames[5]))
    # object 12: only the second engine grows; the first only refreshes its short-term memory
    twelve = _grid_mask(12)
    tracker.add_reference(frames[5], twelve)
    assert [e.obj_nums for e in tracker.engines] == [10, 2]
    assert tracker.engines[0].long_term_frames == 3 and tracker.engines[1].long_term_frames == 2
    ids, logits = tracker.track(frames[0], return_logits=True)
    assert logits.shape[0] == 13 and ids.max() <= 12


def test_keyframe_without_new_object_only_updates_memory(tracker: DeAOTTracker, frames: list[np.ndarray]) -> None:
    tracker.add_reference(frames[0], _grid_mask(2))
    ids = tracker.track(frames[1])
    tracker.add_reference(frames[1], ids)
    engine = tracker.engines[0]
    assert engine.frame_step == 1 and engine.long_term_frames == 1 and engine.last_mem_step == 0


@pytest.mark.parametrize("gap,cap", [(1, 3), (2, 2), (1, 1)])
def test_long_term_memory_never_exceeds_its_cap(frames: list[np.ndarray], gap: int, cap: int) -> None:
    trk = load_tracker("deaot-t", CKPT, long_term_mem_gap=gap, max_len_long_term=cap, precision="fp32")
    trk.add_reference(frames[0], _grid_mask(2))
    sizes = []
    for f in frames[1:] * 2:
        trk.update_memory(trk.track(f))
        sizes.append(trk.engines[0].long_term_frames)
        key = trk.engines[0].long_term[0][0]
        assert key.shape[0] == sizes[-1] * 7 * 11
    assert max(sizes) == cap
    assert sizes == [min(cap, 1 + (i + 1) // gap) for i in range(len(sizes))]


def test_reset_forgets_everything(tracker: DeAOTTracker, frames: list[np.ndarray]) -> None:
    tracker.add_reference(frames[0], _grid_mask(2))
    tracker.reset()
    with pytest.raises(InputError, match="add_reference"):
        tracker.track(frames[1])
    small = frames[0][:64, :64].copy()
    tracker.add_reference(small, np.zeros((64, 64), np.uint8))  # another video size after reset
    assert tracker.track(small).shape == (64, 64)


def test_frame_size_change_is_rejected(tracker: DeAOTTracker, frames: list[np.ndarray]) -> None:
    tracker.add_reference(frames[0], _grid_mask(2))
    with pytest.raises(InputError, match="frame size changed from 96x160 to 80x160"):
        tracker.track(frames[1][:80])
    with pytest.raises(InputError, match="frame size changed"):
        tracker.add_reference(frames[1][:80], _grid_mask(2)[:80])


@pytest.mark.parametrize("bad", ["float", "gray", "list"])
def test_bad_frames_are_rejected(tracker: DeAOTTracker, frames: list[np.ndarray], bad: str) -> None:
    frame = {"float": frames[0].astype(np.float32), "gray": frames[0][..., 0], "list": frames[0].tolist()}[bad]
    with pytest.raises(InputError, match="RGB uint8"):
        tracker.add_reference(frame, _grid_mask(2))


def test_bad_masks_are_rejected(tracker: DeAOTTracker, frames: list[np.ndarray]) -> None:
    with pytest.raises(InputError, match="uint8 array of the frame's size"):
        tracker.add_reference(frames[0], _grid_mask(2)[:50])
    tracker.add_reference(frames[0], _grid_mask(2))
    ids = tracker.track(frames[1])
    with pytest.raises(InputError, match="add new objects with add_reference"):
        tracker.update_memory(np.full_like(ids, 7))


def test_missing_weights_give_model_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("SAMTRACK_CACHE", str(tmp_path))
    monkeypatch.setenv("SAMTRACK_OFFLINE", "1")
    with pytest.raises(ModelError, match="deaot-t"):
        load_tracker("deaot-t")


def test_bad_settings() -> None:
    with pytest.raises(InputError, match="at least 1"):
        load_tracker("deaott", CKPT, max_len_long_term=0)
    with pytest.raises(InputError, match="precision"):
        load_tracker("deaott", CKPT, precision="int8")


def test_bf16_mode_runs(frames: list[np.ndarray]) -> None:
    trk = load_tracker("deaott", CKPT, precision="bf16")
    trk.add_reference(frames[0], _grid_mask(2))
    ids, logits = trk.track(frames[1], return_logits=True)
    assert ids.shape == SIZE and logits.dtype == np.float32 and np.isfinite(logits).all()


def test_channel_argmax_matches_torch_with_ties() -> None:
    x = torch.randint(0, 3, (5, 40, 30)).float()
    assert torch.equal(channel_argmax(x).long(), torch.argmax(x, dim=0))
