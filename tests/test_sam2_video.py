"""SAM 2.1 / EdgeTAM propagators: tiny random models saved and loaded like a user's, real DAVIS frames."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEAOT_FIXTURES, davis_annotations, davis_frames
from PIL import Image
from transformers import (
    EdgeTamVideoConfig,
    EdgeTamVideoModel,
    EdgeTamVisionConfig,
    Sam2HieraDetConfig,
    Sam2VideoConfig,
    Sam2VideoModel,
    Sam2VisionConfig,
    TimmWrapperConfig,
)

from samtrack.errors import InputError, ModelError
from samtrack.models.sam2video import Sam2VideoTracker
from samtrack.models.sam2video.loading import default_processor
from samtrack.models.sam2video.memory import MemoryFrame, ObjectMemory
from samtrack.models.trackers import load_tracker

pytestmark = pytest.mark.usefixtures("one_thread")
S = 64  # model input size
SIZE = (128, 72)  # frames: DAVIS 854x480 scaled down
N_FRAMES = 8
FEATURES = [[S // 4, S // 4], [S // 8, S // 8], [S // 16, S // 16]]
# Widths the architecture needs: memory attention keys are 64 wide (fixed in transformers) and the
# object pointers (hidden size) are split into 64-wide tokens.
HEADS = {"prompt_encoder_config": {"hidden_size": 128, "image_size": S, "patch_size": 16},
         "mask_decoder_config": {"hidden_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2, "mlp_dim": 64,
                                 "iou_head_hidden_dim": 32}}
MEMORY = {"image_size": S, "memory_attention_hidden_size": 128, "memory_attention_num_layers": 1,
          "memory_attention_rope_feat_sizes": [S // 16, S // 16], "memory_encoder_hidden_size": 128,
          "mask_downsampler_embed_dim": 128, "memory_fuser_embed_dim": 128, "memory_fuser_intermediate_dim": 64, "initializer_range": 0.2}


def tiny_sam2_config() -> Sam2VideoConfig:
    hiera = Sam2HieraDetConfig(hidden_size=16, image_size=[S, S], blocks_per_stage=[1, 1, 2, 1],
                               embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 1, 1],
                               window_size_per_stage=[4, 4, 4, 4], global_attention_blocks=[3],
                               window_positional_embedding_background_size=[2, 2])
    vision = Sam2VisionConfig(backbone_config=hiera, backbone_channel_list=[128, 64, 32, 16],
                              backbone_feature_sizes=FEATURES, fpn_hidden_size=128)
    return Sam2VideoConfig(vision_config=vision, memory_attention_feed_forward_hidden_size=64, **HEADS, **MEMORY)


def tiny_edgetam_config() -> EdgeTamVideoConfig:
    backbone = TimmWrapperConfig(architecture="repvit_m1",
                                 model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]})
    vision = EdgeTamVisionConfig(backbone_config=backbone, backbone_feature_sizes=FEATURES, fpn_hidden_size=128)
    return EdgeTamVideoConfig(vision_config=vision, memory_attention_mlp_hidden_size=64,
                              memory_attention_rope_k_sizes=[2, 2], perceiver_resampler_num_latents=8,
                              perceiver_resampler_num_latents_2d=4, **HEADS, **MEMORY)


def save_tiny(kind: str, out: Path) -> Path:
    torch.manual_seed(0)
    if kind == "sam2":
        model = Sam2VideoModel(tiny_sam2_config())
    else:
        pytest.importorskip("timm", reason="EdgeTAM's RepViT backbone comes from timm")
        model = EdgeTamVideoModel(tiny_edgetam_config())
    # Random weights rarely see an object at all; make every object "appear" so masks carry real logits.
    model.mask_decoder.pred_obj_score_head.proj_out.bias.data.fill_(10.0)
    model.eval().save_pretrained(out)
    default_processor(S).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sam2video")
    return {kind: save_tiny(kind, root / kind) for kind in ("sam2", "edgetam")}


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    paths = sorted(davis_frames("blackswan").glob("*.jpg"))[:N_FRAMES]
    return [np.asarray(Image.open(p).convert("RGB").resize(SIZE, Image.BILINEAR)) for p in paths]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """Frame 0's id mask: the swan (1) and a patch of water (2)."""
    swan = np.asarray(Image.open(min(davis_annotations("blackswan").glob("*.png"))).resize(SIZE, Image.NEAREST))
    ids = np.zeros(swan.shape, np.uint8)
    ids[swan > 0] = 1
    ids[50:70, 5:35] = 2
    return ids


def run(trk, frames: list[np.ndarray], ref: np.ndarray, extra: dict[int, Callable] | None = None):
    """Reference on frames[0], then track each frame; on frame i, `extra[i](tracked ids)` becomes a reference."""
    trk.reset()
    trk.add_reference(frames[0], ref)
    labels, logits = [], []
    for i, frame in enumerate(frames[1:], 1):
        ids, lg = trk.track(frame, return_logits=True)
        if extra and i in extra:
            trk.add_reference(frame, extra[i](ids))
        else:
            trk.update_memory(ids)
        labels.append(ids)
        logits.append(lg)
    return labels, logits


@pytest.mark.parametrize("kind", ["sam2", "edgetam"])
def test_matches_transformers_per_object_streaming(kind, tiny_dirs, frames, reference):
    """Batched objects give the logits of transformers' own streaming inference, which runs one object at a time."""
    trk = load_tracker(str(tiny_dirs[kind]), precision="fp32")
    assert isinstance(trk, Sam2VideoTracker)
    _, mine = run(trk, frames[:5], reference)
    proc, model = trk.processor, trk.model
    session = proc.init_video_session(inference_device="cpu", dtype=torch.float32)
    with torch.inference_mode():
        proc.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1, 2],
                                             input_masks=[reference == 1, reference == 2])
        for i, frame in enumerate(frames[:5]):
            out = model(inference_session=session, frame=proc(images=frame, return_tensors="pt").pixel_values[0])
            if i == 0:
                continue
            theirs = torch.nn.functional.interpolate(out.pred_masks.float(), size=reference.shape, mode="bilinear",
                                                     align_corners=False)[:, 0].numpy()
            assert np.abs(theirs).max() > 0.1  # real signal, not all-zero logits
            np.testing.assert_allclose(mine[i - 1][1:], theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_ids_stable_and_logits_consistent(tiny_dirs, frames, reference):
    trk = load_tracker(str(tiny_dirs["sam2"]), precision="fp32")
    labels, logits = run(trk, frames, reference)
    for ids, lg in zip(labels, logits):
        assert ids.dtype == np.uint8 and ids.shape == reference.shape
        assert set(np.unique(ids)) <= {0, 1, 2}
        assert lg.dtype == np.float32 and lg.shape == (3, *reference.shape)
        np.testing.assert_array_equal(lg.argmax(axis=0), ids)
    assert {1, 2} <= set(np.unique(np.stack(labels)))  # both objects are carried


def test_object_added_later_appears_from_then_on(tiny_dirs, frames, reference):
    trk = load_tracker(str(tiny_dirs["sam2"]), precision="fp32")
    first = np.where(reference == 1, 1, 0).astype(np.uint8)
    t = 3
    trk.reset()
    trk.add_reference(frames[0], first)
    seen = []
    for i, frame in enumerate(frames[1:], 1):
        ids, lg = trk.track(frame, return_logits=True)
        if i == t:  # a key frame: tracked, the new object painted on, referenced
            assert lg.shape[0] == 2 and 3 not in ids  # object 3 unknown before frame t
            ids = ids.copy()
            ids[reference == 2] = 3
            trk.add_reference(frame, ids)
            continue
        trk.update_memory(ids)
        seen.append((i, set(np.unique(ids)), lg))
    for i, present, lg in seen:
        if i < t:
            assert present <= {0, 1} and lg.shape[0] == 2
        else:
            assert present <= {0, 1, 3} and 3 in present
            assert lg.shape[0] == 4 and (lg[2] == -1024.0).all()  # id 2 was never referenced


def test_backward_propagation_carries_an_object_to_earlier_frames(tiny_dirs, frames, reference):
    """The session feeds frames in reverse order: the object referenced on frame 5 reaches frames 4..0."""
    trk = load_tracker(str(tiny_dirs["sam2"]), precision="fp32")
    ref = np.where(reference == 2, 2, 0).astype(np.uint8)
    trk.add_reference(frames[5], ref)
    for frame in frames[4::-1]:
        ids = trk.track(frame)
        trk.update_memory(ids)
        assert set(np.unique(ids)) <= {0, 2} and 2 in ids


def test_correction_changes_later_frames_only(tiny_dirs, frames, reference):
    trk = load_tracker(str(tiny_dirs["sam2"]), precision="fp32")
    plain, plain_logits = run(trk, frames, reference)
    t = 3

    def move_object_1(ids: np.ndarray) -> np.ndarray:
        moved = np.zeros_like(ids, dtype=bool)
        moved[10:40, 60:100] = True  # object 1 is elsewhere: a correction on frame t (object 2 untouched)
        return np.where(ids == 1, 0, np.where(moved & (ids != 2), 1, ids)).astype(np.uint8)

    _, fixed_logits = run(trk, frames, reference, extra={t: move_object_1})
    for i in range(len(plain)):
        frame = i + 1
        if frame <= t:  # up to the correction frame itself (tracked before the correction), nothing changes
            np.testing.assert_array_equal(fixed_logits[i], plain_logits[i])
        else:
            assert not np.allclose(fixed_logits[i][1], plain_logits[i][1])
    assert len(trk._objects[1].conditioning) == 2 and len(trk._objects[2].conditioning) == 1


def test_objects_with_the_same_memory_run_in_one_batch(tiny_dirs, frames, reference):
    trk = load_tracker(str(tiny_dirs["sam2"]), precision="fp32")
    calls = []
    hook = trk.model.memory_attention.register_forward_hook(lambda m, args, kwargs, out: calls.append(out.shape),
                                                            with_kwargs=True)
    try:
        ref = reference.copy()
        ref[5:20, 100:120] = 3
        trk.add_reference(frames[0], ref)
        ids = trk.track(frames[1])
        assert len(calls) == 1 and calls[0][1] == 3  # three objects, one call
        ids = ids.copy()
        ids[ids == 3] = 0
        ids[30:40, 100:120] = 3  # object 3 corrected: its memory differs from the others' now
        trk.add_reference(frames[1], ids)
        trk.track(frames[2])
        assert sorted(shape[1] for shape in calls[1:]) == [1, 2]
    finally:
        hook.remove()


def test_memory_stays_bounded(tiny_dirs, frames, reference):
    trk = load_tracker(str(tiny_dirs["sam2"]), num_memory_frames=2, max_conditioning_frames=2, precision="fp32")
    trk.add_reference(frames[0], reference)
    sizes = []
    for i in range(1, 31):
        frame = frames[i % N_FRAMES]
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
    pointer_window = trk.num_pointer_frames
    assert max(max(s.values()) for s in sizes) <= 2 + pointer_window + 1
    assert sizes[-1] == sizes[-8]  # flat once the windows are full
    assert min(trk._objects[1].conditioning) == 0  # the object's first reference is always kept


def test_conditioning_cap_keeps_the_first_reference_and_the_newest():
    frame = MemoryFrame(torch.zeros(1), torch.zeros(1), torch.zeros(1, 1, 1))
    mem = ObjectMemory()
    for step in (0, 4, 9, 12):
        mem.add_conditioning(step, frame, cap=3)
    assert list(mem.conditioning) == [0, 9, 12]
    mem.add_conditioning(20, frame, cap=1)
    assert list(mem.conditioning) == [20]  # with room for one, a correction replaces the reference
    for step in range(21, 40):
        mem.add_tracked(step, frame)
        mem.prune(step + 1, num_memory_frames=6, num_pointer_frames=15)
    assert list(mem.recent) == list(range(34, 40)) and list(mem.pointers) == list(range(25, 34))


def test_errors(tiny_dirs, frames, reference):
    trk = load_tracker(str(tiny_dirs["sam2"]), precision="fp32")
    with pytest.raises(InputError, match="add_reference must be called"):
        trk.track(frames[0])
    with pytest.raises(InputError, match="frame's size"):
        trk.add_reference(frames[0], reference[:-1])
    with pytest.raises(InputError, match="no object"):
        trk.add_reference(frames[0], np.zeros_like(reference))
    trk.add_reference(frames[0], reference)
    with pytest.raises(InputError, match="update_memory needs a frame tracked"):
        trk.update_memory(reference)
    with pytest.raises(InputError, match="frame size changed"):
        trk.track(frames[1][:-2])
    ids = trk.track(frames[1])
    with pytest.raises(InputError, match="not tracked"):
        trk.update_memory(np.where(ids > 0, 9, 0).astype(np.uint8))
    with pytest.raises(InputError, match="num_memory_frames"):
        load_tracker(str(tiny_dirs["sam2"]), num_memory_frames=7)


def test_load_tracker_dispatch(tmp_path, tiny_dirs):
    from samtrack.models.deaot.tracker import DeAOTTracker

    assert isinstance(load_tracker("deaot-t", checkpoint=DEAOT_FIXTURES / "deaott.pth"), DeAOTTracker)
    assert isinstance(load_tracker("sam2.1-tiny", checkpoint=tiny_dirs["sam2"]), Sam2VideoTracker)
    (tmp_path / "config.json").write_text('{"model_type": "sam2_video"}')
    with pytest.raises(ModelError, match="cannot load"):
        load_tracker(str(tmp_path))


def test_cli_memory_knobs_reach_the_tracker(tmp_path, tiny_dirs, frames, tiny_sam, capsys):
    import json

    from samtrack import cli

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames[:4]):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    common = ["--quiet", "track", str(folder), "--box", "40,10,100,60", "--segmenter", tiny_sam,
              "--tracker", "sam2.1-tiny", "--checkpoint", str(tiny_dirs["sam2"]), "--no-video", "--no-gif"]
    out = tmp_path / "run"
    assert cli.main([*common, "--out", str(out), "--num-memory-frames", "2", "--max-conditioning-frames", "3"]) == 0
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert (settings["tracker"]["num_memory_frames"], settings["tracker"]["max_conditioning_frames"]) == (2, 3)
    assert len(list((out / "masks").glob("*.png"))) == 4
    capsys.readouterr()
    assert cli.main([*common, "--out", str(tmp_path / "bad"), "--num-memory-frames", "9"]) == 1
    assert "num_memory_frames must be in 0..6" in capsys.readouterr().err
