"""SAM 3 concept tracking, streamed (`ConceptTracker`) on the tiny random ``sam3_video`` checkpoint.

Random weights detect nothing at SAM 3's thresholds and lose every object after one frame, so most
tests script what the detector sees and the tracker follows through `sam3_scene.Scene` (the detector
head's and the tracker's outputs; SAM 3's association, hotstart, NMS and post-processing run as they
are). The caption that finds nothing, the duplicates of the real detector and the bf16 run use the
model alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sam3_scene import Blob, Scene
from transformers.models.sam3_video import modeling_sam3_video as sam3_video

from samtrack.errors import InputError, ModelError
from samtrack.models.sam3 import concept, load_sam3
from samtrack.models.sam3.concept import ConceptFrame, ConceptTracker

SIZE = (90, 120)  # frame height, width


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny model's operations are too small to share out: on a busy two-core machine two threads
    made a frame ~50× slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tiny_sam3_video):
    return load_sam3(tiny_sam3_video, "concept", device="cpu", precision="fp32")


def _frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(count)]


def _run(tracker: ConceptTracker, first: int, count: int) -> tuple[list[list[ConceptFrame]], list[ConceptFrame]]:
    """Push `count` frames from index `first`: what each push returned, and every final frame in order."""
    pushed = [tracker.push(first + i, frame) for i, frame in enumerate(_frames(count))]
    return pushed, [frame for batch in pushed for frame in batch] + tracker.finish()


def _blob_mask(blob: Blob, side: int) -> np.ndarray:
    """The blob as SAM 3's processor brings it to frame size."""
    logits = F.interpolate(blob.mask(side)[None, None], size=SIZE, mode="bilinear", align_corners=False)
    return (logits[0, 0] > 0).numpy()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


SWAN, DUCK = Blob("swan-1", "swan", (2, 2, 12, 12)), Blob("duck-1", "duck", (18, 18, 30, 30))


def test_frames_come_back_once_final_in_order_with_stable_ids_and_labels(weights, monkeypatch):
    Scene(weights.model, weights.processor, lambda i: [SWAN, DUCK]).install(monkeypatch)
    tracker = ConceptTracker(weights, "swan. duck")
    assert tracker.categories == ("swan", "duck") and tracker.hotstart_delay == 15
    pushed, final = _run(tracker, 100, 20)
    # frame i is final once frames i..i+14 are in: 14 pushes return nothing, then one frame each
    assert [[f.index for f in batch] for batch in pushed] == [[]] * 14 + [[i] for i in range(100, 106)]
    assert [f.index for f in final] == list(range(100, 120))
    for frame in final:
        assert [(o.track_id, o.label) for o in frame.objects] == [(1, "swan"), (2, "duck")]
        for obj, blob in zip(frame.objects, (SWAN, DUCK)):
            assert obj.mask.dtype == bool and obj.mask.shape == SIZE
            assert _iou(obj.mask, _blob_mask(blob, weights.model.low_res_mask_size)) > 0.95
            assert obj.score == pytest.approx(0.9, abs=1e-4)


def test_objects_removed_within_their_hotstart_window_never_appear_and_others_keep_their_masks(
        weights, monkeypatch):
    """A swan seen by the detector on frame 3 only, but followed by the tracker, is unmatched for 8
    frames and removed by SAM 3 on frame 11, inside its window: it must be missing from every final
    frame, also frames 3-10 that had it. A duck entering on frame 5 (an object appearing mid-video) is
    created after it, so on the removal frame transformers alone would hand the duck the ghost's mask."""
    ghost, late = Blob("ghost", "swan", (14, 2, 20, 8)), Blob("duck-2", "duck", (2, 20, 10, 30))

    def scene(i):
        blobs = [SWAN, DUCK]
        if 3 <= i <= 25:
            blobs.append(Blob(ghost.key, ghost.label, ghost.box, detected=i == 3))
        return blobs + ([late] if i >= 5 else [])

    installed = Scene(weights.model, weights.processor, scene).install(monkeypatch)
    _, final = _run(ConceptTracker(weights, "swan. duck"), 0, 26)
    assert "ghost" in installed.bound.values()  # SAM 3 did create the ghost object
    side = weights.model.low_res_mask_size
    expected = {1: SWAN, 2: DUCK, 3: late}
    for frame in final:
        assert {o.track_id for o in frame.objects} == ({1, 2, 3} if frame.index >= 5 else {1, 2})
        for obj in frame.objects:
            assert _iou(obj.mask, _blob_mask(expected[obj.track_id], side)) > 0.95, (frame.index, obj.track_id)
    assert next(o.label for o in final[5].objects if o.track_id == 3) == "duck"


def test_a_category_added_mid_video_is_searched_from_then_on(weights, monkeypatch):
    heron = Blob("heron-1", "heron", (20, 2, 30, 10))
    Scene(weights.model, weights.processor, lambda i: [SWAN, heron]).install(monkeypatch)
    tracker = ConceptTracker(weights, "swan", hotstart_delay=4)
    final = []
    for index, frame in enumerate(_frames(10)):
        if index == 6:
            assert tracker.add_categories("heron. swan") == ("swan", "heron")
        final += tracker.push(index, frame)
    final += tracker.finish()
    assert [sorted(o.label for o in f.objects) for f in final] == [["swan"]] * 6 + [["heron", "swan"]] * 4


def test_more_objects_than_an_id_mask_holds(weights, monkeypatch):
    """30 new objects on each of 10 frames: SAM 3 keeps them all (ids beyond 255) and so do we."""
    cells = [(4 * (k // 8), 4 * (k % 8)) for k in range(30)]

    def scene(i):
        return [Blob(f"{i}-{k}", "swan", (y, x, y + 3, x + 3)) for k, (y, x) in enumerate(cells)]

    Scene(weights.model, weights.processor, scene).install(monkeypatch)
    _, final = _run(ConceptTracker(weights, "swan"), 0, 10)
    assert [len(f.objects) for f in final] == [30] * 10
    ids = [o.track_id for f in final for o in f.objects]
    assert sorted(ids) == list(range(1, 301))


def test_memory_stays_bounded_while_the_video_goes_on(weights, monkeypatch):
    """With the real tracker storing its memories: no frame is kept, at most 15 past frames of pointers
    and 4 conditioning frames per object (re-conditioned every 2nd frame here, SAM 3 does it every 16th,
    so that dropping old ones is exercised), no per-frame bookkeeping, and the bytes held stop growing."""
    monkeypatch.setattr(weights.model, "recondition_every_nth_frame", 2)
    Scene(weights.model, weights.processor, lambda i: [SWAN, DUCK], real=True).install(monkeypatch)
    tracker = ConceptTracker(weights, "swan. duck")
    sizes = []
    for index, frame in enumerate(_frames(50)):
        tracker.push(index, frame)
        held, session = tracker.held(), tracker._session
        assert held.frames == 0 and held.pending <= 14
        for per_obj in session.output_dict_per_obj.values():
            assert len(per_obj["non_cond_frame_outputs"]) <= 15 and len(per_obj["cond_frame_outputs"]) <= 4
        assert held.outputs <= 2 * (15 + 4)
        assert len(session.obj_id_to_tracker_score_frame_wise) == 0 and len(session.suppressed_obj_ids) == 0
        sizes.append(held.bytes)
    assert min(session.output_dict_per_obj[0]["cond_frame_outputs"]) > 40  # old conditioning frames went
    assert max(sizes[30:]) <= max(sizes[15:30])
    assert len(tracker.finish()) == 14


def test_duplicate_detections_of_the_real_detector_become_one_object(weights, monkeypatch):
    """The tiny model's random detector proposes 16 overlapping masks for one caption (thresholds
    lowered so that they pass): on the first frame, where every object is a new detection,
    transformers alone makes an object of each, SAM 3's NMS keeps one."""
    def objects_on_first_frame() -> int:
        tracker = ConceptTracker(weights, "swan", detection_threshold=0.2, new_object_threshold=0.2)
        return len(_run(tracker, 0, 1)[1][0].objects)

    assert objects_on_first_frame() == 1
    monkeypatch.setattr(concept, "use_portable_postprocessing", lambda: None)
    monkeypatch.setattr(sam3_video, "cv_utils_kernel", False)  # the hub kernel failed to load
    assert objects_on_first_frame() > 1


def test_two_detections_of_one_object_make_one_track(weights, monkeypatch):
    """Scripted: each frame the detector proposes a swan twice (boxes overlapping by IoU 0.6). Without
    NMS SAM 3 makes two tracks of it (its hotstart step removes the younger after 8 overlaps, i.e. on the
    5th frame here: this video has 3); with it, one."""
    copy = Blob("swan-1-copy", "swan", (4, 4, 14, 14), score=0.85)
    Scene(weights.model, weights.processor, lambda i: [SWAN, copy]).install(monkeypatch)
    assert {o.track_id for f in _run(ConceptTracker(weights, "swan"), 0, 3)[1] for o in f.objects} == {1}
    monkeypatch.setattr(concept, "use_portable_postprocessing", lambda: None)
    monkeypatch.setattr(sam3_video, "cv_utils_kernel", False)
    assert {o.track_id for f in _run(ConceptTracker(weights, "swan"), 0, 3)[1] for o in f.objects} == {1, 2}


def test_a_caption_that_finds_nothing_gives_empty_frames(weights):
    _, final = _run(ConceptTracker(weights, "zebra. giraffe"), 0, 4)
    assert [(f.index, f.objects) for f in final] == [(i, ()) for i in range(4)]


def test_a_stream_may_start_anywhere_and_frames_must_follow_in_order(weights, monkeypatch):
    Scene(weights.model, weights.processor, lambda i: [SWAN]).install(monkeypatch)
    tracker = ConceptTracker(weights, "swan", hotstart_delay=2)
    frames = _frames(3)
    assert tracker.push(7, frames[0]) == []
    assert [f.index for f in tracker.push(8, frames[1])] == [7]
    with pytest.raises(InputError, match="frame 10 pushed after frame 8"):
        tracker.push(10, frames[2])
    with pytest.raises(InputError, match="frame size changed"):
        tracker.push(9, frames[2][:50])
    assert [f.index for f in tracker.finish()] == [8]
    restarted = tracker.push(0, frames[0]) + tracker.finish()  # a new stream, its ids from 1
    assert [(f.index, [o.track_id for o in f.objects]) for f in restarted] == [(0, [1])]


def test_a_mask_threshold_above_the_masks_leaves_nothing(weights, monkeypatch):
    Scene(weights.model, weights.processor, lambda i: [SWAN]).install(monkeypatch)
    # the scripted masks' logits are +10: probability 0.99995
    assert [len(f.objects) for f in _run(ConceptTracker(weights, "swan", mask_threshold=0.9999), 0, 2)[1]] == [1, 1]
    assert [len(f.objects) for f in _run(ConceptTracker(weights, "swan", mask_threshold=0.99999), 0, 2)[1]] == [0, 0]


def test_settings_are_checked_and_kept_per_tracker(weights, tiny_sam3_video):
    before = weights.model.score_threshold_detection
    tracker = ConceptTracker(weights, "swan", detection_threshold=0.3, hotstart_delay=4)
    assert tracker._model.score_threshold_detection == 0.3 and weights.model.score_threshold_detection == before
    assert tracker._model.hotstart_unmatch_thresh == 4  # SAM 3's counts must fit the window
    with pytest.raises(InputError, match="detection_threshold must be a probability"):
        ConceptTracker(weights, "swan", detection_threshold=1.5)
    with pytest.raises(InputError, match="hotstart_delay must be a whole number"):
        ConceptTracker(weights, "swan", hotstart_delay=-1)
    with pytest.raises(InputError, match="names nothing"):
        ConceptTracker(weights, " . ")
    with pytest.raises(InputError, match="SAM 3 reads at most 32"):
        ConceptTracker(weights, "y" * 40)
    with pytest.raises(ModelError, match="role='concept'"):
        ConceptTracker(load_sam3(tiny_sam3_video, "detector", device="cpu", precision="fp32"), "swan")


def test_bf16(tiny_sam3_video, monkeypatch):
    weights = load_sam3(tiny_sam3_video, "concept", device="cpu", precision="bf16")
    Scene(weights.model, weights.processor, lambda i: [SWAN, DUCK], real=True).install(monkeypatch)
    _, final = _run(ConceptTracker(weights, "swan. duck"), 0, 3)
    assert [[(o.track_id, o.label) for o in f.objects] for f in final] == [[(1, "swan"), (2, "duck")]] * 3
    assert all(o.mask.dtype == bool for f in final for o in f.objects)
