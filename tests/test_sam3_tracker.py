"""`--tracker sam3`: SAM 3's tracker (Sam3TrackerVideoModel) on samtrack's SAM 2 family tracker, from the one
sam3_video checkpoint (tiny random SAM 3, real DAVIS frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sam2_video import frames, reference, run  # noqa: F401 (fixtures)

from samtrack.models.sam2video import Sam2VideoTracker
from samtrack.models.trackers import backend_of, load_tracker, load_tracker_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sam3_names_and_directories_pick_the_sam3_backend(tiny_sam3_video):
    names = [backend_of(n).name for n in ("sam3", "facebook/sam3", tiny_sam3_video)]
    assert names == ["sam3"] * 3 and backend_of("sam3", checkpoint=tiny_sam3_video).name == "sam3"
    assert backend_of("r50-deaotl").name == "deaot"
    weights = load_tracker_weights("sam3", checkpoint=tiny_sam3_video, device="cpu", precision="fp32")
    assert type(weights.model).__name__ == "Sam3TrackerVideoModel"
    assert isinstance(weights.tracker(), Sam2VideoTracker)  # SAM 3's tracker runs on the SAM 2 family tracker


def test_matches_transformers_per_object_streaming(tiny_sam3_video, frames, reference):  # noqa: F811
    """Batched objects give the logits of transformers' own Sam3TrackerVideoModel streaming inference
    (one object at a time), mask prompts included (288-wide at full size, not image_size / 4).

    Both run in float64: the random tiny tracker amplifies float32 rounding from frame to frame (to
    about 0.1% of the logit range by the fourth frame); in float64 they agree to the float32 outputs' rounding."""
    trk = load_tracker(tiny_sam3_video, precision="fp32")
    trk.model.double()  # this tracker's own copy of the weights
    _, mine = run(trk, frames[:5], reference)
    proc, model = trk.processor, trk.model
    assert tuple(model.prompt_encoder.mask_input_size) != (model.image_size // 4,) * 2  # the case SAM 2 never hits
    session = proc.init_video_session(inference_device="cpu", dtype=torch.float64)
    with torch.inference_mode():
        proc.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1, 2],
                                             input_masks=[reference == 1, reference == 2])
        for i, frame in enumerate(frames[:5]):
            pixels = proc(images=frame, return_tensors="pt").pixel_values[0].double()
            out = model(inference_session=session, frame=pixels)
            if i == 0:
                continue
            theirs = torch.nn.functional.interpolate(out.pred_masks.float(), size=reference.shape, mode="bilinear",
                                                     align_corners=False)[:, 0].numpy()
            present = theirs > -1000  # not the constant logit of an object judged absent
            assert present.all(axis=(1, 2)).all() and np.ptp(theirs) > 1.0  # real signal to compare
            np.testing.assert_allclose(mine[i - 1][1:], theirs, rtol=1e-6, atol=1e-6 * np.abs(theirs).max())


def test_memory_stays_bounded(tiny_sam3_video, frames, reference):  # noqa: F811
    trk = load_tracker("sam3", checkpoint=tiny_sam3_video, num_memory_frames=2, max_conditioning_frames=2,
                          precision="fp32")
    trk.add_reference(frames[0], reference)
    sizes = []
    for i in range(1, 25):
        frame = frames[i % len(frames)]
        ids = trk.track(frame)
        if i % 7 == 0:  # a correction of object 1 every 7 frames: conditioning frames pile up without a cap
            ids = ids.copy()
            ids[ids == 1] = 0
            ids[(i % 5) * 5:(i % 5) * 5 + 20, 60:90] = 1
            trk.add_reference(frame, ids)
        else:
            trk.update_memory(ids)
        for mem in trk._objects.values():
            assert len(mem.conditioning) <= 2 and len(mem.recent) <= 2
        sizes.append(trk.memory_frames())
    assert trk.num_pointer_frames == trk.model.config.max_object_pointers_in_encoder - 1
    assert max(max(s.values()) for s in sizes) <= 2 + trk.num_pointer_frames + 1
    assert sizes[-1] == sizes[-8]  # flat once the windows are full
    assert min(trk._objects[1].conditioning) == 0


def test_bf16_tracker_runs_under_autocast(tiny_sam3_video, frames, reference):  # noqa: F811
    trk = load_tracker(tiny_sam3_video, precision="bf16")
    assert trk.precision == "bf16" and trk.model.dtype == torch.float32
    labels, _ = run(trk, frames[:3], reference)
    assert all(ids.dtype == np.uint8 and ids.shape == reference.shape for ids in labels)
