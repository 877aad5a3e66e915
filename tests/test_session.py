"""The segment-and-track session end to end: tiny random SAM, the DeAOT fixture checkpoints, real frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DEAOT_FIXTURES, davis_annotations, davis_frames
from PIL import Image

from samtrack import cli
from samtrack.errors import InputError
from samtrack.io.masks import load_id_mask
from samtrack.tracking.discovery import find_new_objects
from samtrack.tracking.session import Session
from samtrack.tracking.settings import Settings

N_FRAMES = 12
SCALE = 4  # 854×480 -> 213×120: the tracker's cost drops ~16×, the code paths stay the same


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    """Blackswan frames 0-11 at a quarter of their size, as an image folder."""
    out = tmp_path_factory.mktemp("blackswan_small")
    for path in sorted(davis_frames("blackswan").glob("*.jpg"))[:N_FRAMES]:
        im = Image.open(path)
        im.resize((im.width // SCALE, im.height // SCALE), Image.BILINEAR).save(out / path.name, quality=95)
    return out


@pytest.fixture(scope="module")
def gt_small() -> list[np.ndarray]:
    masks = []
    for path in sorted(davis_annotations("blackswan").glob("*.png"))[:N_FRAMES]:
        im = Image.open(path)
        masks.append(np.array(im.resize((im.width // SCALE, im.height // SCALE), Image.NEAREST)) > 0)
    return masks


def settings(tiny_sam: str, tracker: str = "deaot-t", **kw) -> Settings:
    fixture = {"deaot-t": "deaott.pth", "r50-deaotl": "r50_deaotl.pth"}.get(tracker)
    ckpt = str(DEAOT_FIXTURES / fixture) if fixture else None
    # Random SAM weights predict low IoU/stability, so the thresholds are opened to get segments at all.
    base = {"segmenter.model": tiny_sam, "tracker.model": tracker, "tracker.checkpoint": ckpt, "sam_gap": 5,
            "min_area": 20, "everything.points_per_side": 4, "everything.pred_iou_thresh": 0.0,
            "everything.stability_score_thresh": 0.0, "everything.crop_n_layers": 0,
            "everything.min_mask_region_area": 0}
    return Settings().updated({**base, **kw})


def mask_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "masks").glob("*.png"))}


def test_find_new_objects_gives_fresh_ids_and_applies_thresholds():
    tracked = np.zeros((20, 20), np.uint8)
    tracked[:10, :10] = 1
    segments = np.zeros((20, 20), np.uint8)
    segments[:10, :10] = 1  # already tracked
    segments[10:, 10:] = 2  # new, 100 px
    segments[5:15, 0:4] = 3  # half inside the tracked object: 50 % outside < 0.8
    segments[0:2, 15:20] = 4  # new but 10 px < min_area
    new = find_new_objects(tracked, segments, next_id=2, min_new_obj_iou=0.8, min_area=20, max_obj_num=255)
    assert set(np.unique(new)) == {0, 2}  # SAM-Track would have numbered it 1, reusing the tracked id
    assert (new == 2).sum() == 100
    capped = find_new_objects(tracked, segments, next_id=2, min_new_obj_iou=0.8, min_area=20, max_obj_num=1)
    assert not capped.any()


def test_auto_mode_adds_objects_on_key_frames_only_with_stable_ids(frames_dir, tiny_sam, tmp_path):
    s = Session(frames_dir, tmp_path / "run", settings(tiny_sam))
    s.propagate(0, discover=True)
    s.close()
    assert s.objects, "segment-everything found nothing on frame 0"
    assert {o.frame for o in s.objects.values()} <= {0, 5, 10}
    assert sorted(s.objects) == list(range(1, len(s.objects) + 1))  # fresh, consecutive ids
    masks = [load_id_mask(p) for p in sorted((tmp_path / "run" / "masks").glob("*.png"))]
    assert len(masks) == N_FRAMES
    known = set(s.objects) | {0}
    for i, ids in enumerate(masks):
        present = set(np.unique(ids).tolist())
        assert present <= known
        allowed = {o.id for o in s.objects.values() if o.frame <= i} | {0}
        assert present <= allowed, f"frame {i} holds an object before the key frame that found it"


def test_roll_back_keeps_earlier_frames_byte_identical(frames_dir, gt_small, tiny_sam, tmp_path):
    out = tmp_path / "run"
    s = Session(frames_dir, out, settings(tiny_sam))
    swan = s.add_object(0, mask=gt_small[0], label="swan")
    s.propagate(0)
    before = mask_bytes(out)
    box = np.zeros_like(gt_small[0])
    box[5:25, 5:40] = True
    new = s.add_object(6, mask=box, label="patch")
    s.propagate(6)
    s.close()
    after = mask_bytes(out)
    names = sorted(before)
    assert [after[n] for n in names[:6]] == [before[n] for n in names[:6]]
    assert (load_id_mask(out / "masks" / names[6])[box] == new).all()
    assert new == swan + 1
    assert s.objects[new].frame == 6 and s.objects[new].label == "patch"


def test_backward_propagation_fills_earlier_frames_without_overwriting(frames_dir, gt_small, tiny_sam, tmp_path):
    out = tmp_path / "run"
    s = Session(frames_dir, out, settings(tiny_sam, tracker="r50-deaotl"))
    s.add_object(0, mask=gt_small[0] & (np.arange(gt_small[0].shape[1]) < 80), label="left")
    s.propagate(0, 6)
    held = [s.mask(i).copy() for i in range(6)]
    late = s.add_object(6, mask=gt_small[6], label="late swan")
    s.propagate(6, direction="backward")
    s.close()
    for i in range(6):
        ids = s.mask(i)
        kept = held[i] > 0
        assert (ids[kept] == held[i][kept]).all(), f"frame {i}: pixels already held were overwritten"
        assert set(np.unique(ids[~kept])) <= {0, late}
    assert any((s.mask(i) == late).any() for i in range(6)), "the late object never reached earlier frames"


def test_resume_after_interrupt_gives_the_same_masks(frames_dir, tiny_sam, tmp_path):
    full = Session(frames_dir, tmp_path / "full", settings(tiny_sam))
    full.propagate(0, discover=True)
    full.close()

    def ctrl_c(done: int, total: int, info: dict) -> None:
        if info["frame"] == 7:
            raise KeyboardInterrupt

    part = Session(frames_dir, tmp_path / "part", settings(tiny_sam))
    with pytest.raises(KeyboardInterrupt):
        part.propagate(0, discover=True, progress=ctrl_c)
    part.close()
    assert len(mask_bytes(tmp_path / "part")) == 8  # frames 0-7, each complete
    resumed = Session(frames_dir, tmp_path / "part", resume=True)
    assert resumed.resumable
    resumed.propagate(None)
    resumed.close()
    assert mask_bytes(tmp_path / "part") == mask_bytes(tmp_path / "full")
    assert {k: (o.frame, o.prompt) for k, o in resumed.objects.items()} == \
        {k: (o.frame, o.prompt) for k, o in full.objects.items()}


def test_bad_prompts_give_clear_errors_and_change_nothing(frames_dir, gt_small, tiny_sam, tmp_path):
    out = tmp_path / "run"
    s = Session(frames_dir, out, settings(tiny_sam))
    obj = s.add_object(0, mask=gt_small[0])
    s.store.flush()
    before = (mask_bytes(out), dict(s.objects))
    with pytest.raises(InputError, match="outside"):
        s.add_object(0, points=[(10_000, 5)], labels=[1])
    with pytest.raises(InputError, match="unknown object id 99"):
        s.add_object(0, mask=gt_small[0], obj_id=99)
    with pytest.raises(InputError, match=f"frame index {N_FRAMES}"):
        s.add_object(N_FRAMES, box=(1, 1, 20, 20))
    with pytest.raises(InputError, match="exactly one prompt"):
        s.add_object(0, box=(1, 1, 20, 20), mask=gt_small[0])
    with pytest.raises(InputError, match="no objects"):
        s.propagate(3)
    s.store.flush()
    assert (mask_bytes(out), dict(s.objects)) == before
    s.remove_object(obj)
    assert not s.objects and not s.mask(0).any()
    assert s.undo() == f"remove object {obj}"
    assert obj in s.objects and (s.mask(0) == obj).sum() == gt_small[0].sum()
    s.close()
    with pytest.raises(InputError, match="already holds a run"):
        Session(frames_dir, out, settings(tiny_sam))


def test_cli_track_with_box_on_video_writes_every_output(blackswan_mp4, tiny_sam, tmp_path):
    out = tmp_path / "run"
    code = cli.main(["--quiet", "track", str(blackswan_mp4), "--out", str(out), "--box", "300,100,600,400",
                     "--segmenter", tiny_sam, "--tracker", "deaot-t", "--checkpoint",
                     str(DEAOT_FIXTURES / "deaott.pth"), "--end", "3", "--no-gif"])
    assert code == 0
    for name in ("overlay.mp4", "masks.zip", "masks_rle.json", "objects.json", "run.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "masks").glob("*.png"))) == 4  # frames past --end get no mask at all
    objects = json.loads((out / "objects.json").read_text())
    assert objects["1"]["prompt"]["kind"] == "box"
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["tracker"]["model"] == "deaot-t" and run["settings"]["sam_gap"] == 10
    assert run["frames"]["covered"] == [[0, 3]]


def test_cli_tracks_mask_prompts_without_any_segmenter(frames_dir, gt_small, tmp_path):
    """A prompts file of masks (e.g. ground truth) needs only the tracker, not SAM weights."""
    Image.fromarray(gt_small[0].astype(np.uint8) * 255).save(tmp_path / "swan.png")
    (tmp_path / "prompts.yaml").write_text("- frame: 0\n  label: swan\n  mask: swan.png\n")
    out = tmp_path / "run"
    code = cli.main(["--quiet", "track", str(frames_dir), "--out", str(out), "--prompts",
                     str(tmp_path / "prompts.yaml"), "--segmenter", str(tmp_path / "no-such-sam"),
                     "--tracker", "deaot-t", "--checkpoint", str(DEAOT_FIXTURES / "deaott.pth"),
                     "--end", "2", "--no-gif", "--no-video"])
    assert code == 0
    masks = [load_id_mask(p) for p in sorted((out / "masks").glob("*.png"))]
    assert np.array_equal(masks[0] == 1, gt_small[0])
    assert json.loads((out / "objects.json").read_text())["1"]["label"] == "swan"


def test_cli_track_reports_usage_and_input_errors(tmp_path, capsys):
    assert cli.main(["track", str(tmp_path / "missing.mp4"), "--auto", "--out", str(tmp_path / "o")]) == 1
    assert "missing.mp4" in capsys.readouterr().err
    assert cli.main(["track", str(tmp_path), "--out", str(tmp_path / "o")]) == 2  # nothing to track: usage
    with pytest.raises(SystemExit) as usage:
        cli.main(["track", "x.mp4", "--out", "o", "--click", "12"])
    assert usage.value.code == 2


class _BoxFill:
    """Segmenter double for the grounding path: a box prompt gives the box itself."""

    def box(self, frame, box):
        mask = np.zeros(frame.shape[:2], bool)
        x0, y0, x1, y1 = (round(v) for v in box)
        mask[y0:y1, x0:x1] = True
        return mask


class _FixedDetector:
    """Detector double: the same detections on every frame, with the captions it was asked."""

    options = ("box_threshold", "text_threshold", "box_size_threshold")

    def __init__(self, detections):
        self.detections, self.captions = detections, []

    def detect(self, frame, caption, **thresholds):
        self.captions.append(caption)
        return self.detections


def test_text_prompt_adds_labelled_objects_once(frames_dir, tmp_path):
    from samtrack.models.grounding import Detection

    det = _FixedDetector([Detection((50, 20, 120, 80), 0.9, "swan"), Detection((0, 0, 30, 30), 0.4, "water")])
    s = Session(frames_dir, tmp_path / "run", Settings(min_area=20), segmenter=_BoxFill(), detector=det)
    added = s.add_objects_from_text(0, "swan. water")
    assert sorted(added) == [1, 2]
    assert {s.objects[i].label for i in added} == {"swan", "water"}
    assert all(s.objects[i].prompt["kind"] == "text" for i in added)
    assert (s.mask(0)[20:80, 50:120] > 0).all()
    assert s.add_objects_from_text(0, "swan. water") == []  # both already tracked there
    assert s.undo().startswith("text") and s.undo().startswith("text") and not s.objects
    s.close()


def test_auto_mode_by_category_labels_new_objects(frames_dir, tmp_path):
    from samtrack.models.grounding import Detection

    class StillTracker:  # tracker double: objects stay where they were referenced
        def reset(self):
            self.ids = None

        def add_reference(self, frame, ids):
            self.ids = ids.copy()

        def track(self, frame):
            return self.ids.copy()

        def update_memory(self, ids):
            self.ids = ids.copy()

    det = _FixedDetector([Detection((50, 20, 120, 80), 0.9, "swan")])
    s = Session(frames_dir, tmp_path / "run", Settings(sam_gap=5), segmenter=_BoxFill(), detector=det,
                tracker=StillTracker())
    s.propagate(0, discover=True, categories="swan")
    s.close()
    assert [(o.id, o.label, o.frame) for o in s.objects.values()] == [(1, "swan", 0)]
    assert det.captions == ["swan"] * 3  # key frames 0, 5, 10


def test_audio_grounding_needs_a_soundtrack(blackswan_mp4, tmp_path):
    s = Session(blackswan_mp4, tmp_path / "run")
    with pytest.raises(InputError, match="no audio track"):
        s.add_objects_from_audio(0)
    s.close()


def test_auto_mode_runs_unchanged_with_a_sam2_tracker(frames_dir, tiny_sam, tmp_path):
    from test_sam2_video import save_tiny

    tracker_dir = save_tiny("sam2", tmp_path / "sam2")
    s = Session(frames_dir, tmp_path / "run", settings(tiny_sam, tracker=str(tracker_dir)))
    s.propagate(0, 6, discover=True)
    s.close()
    assert s.objects and {o.frame for o in s.objects.values()} <= {0, 5}
    for i in range(7):
        assert set(np.unique(s.mask(i)).tolist()) <= set(s.objects) | {0}
