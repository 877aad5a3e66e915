"""`samtrack track --init-from`: objects from a DAVIS-style annotation folder or a COCO file, tracked by
a random-weight DeAOT-T in the official checkpoint format, keep their ids and labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from conftest import DEAOT_FIXTURES
from PIL import Image

from samtrack.cli import main
from samtrack.errors import InputError
from samtrack.io.annotations import read_annotations
from samtrack.io.export import export_run
from samtrack.io.masks import load_id_mask, save_id_mask
from samtrack.io.sources import open_source
from samtrack.tracking.prompts import load_annotations

TRACKER = ["--tracker", "deaot-t", "--checkpoint", str(DEAOT_FIXTURES / "deaott.pth"), "--precision", "fp32",
           "--no-video", "--no-gif"]


def two_objects(mask: np.ndarray) -> np.ndarray:
    """The swan's mask cut at its middle column into object 1 (left) and object 2 (right)."""
    ids = mask.astype(np.uint8)
    xs = np.nonzero(mask.any(axis=0))[0]
    ids[:, (xs.min() + xs.max()) // 2:][mask[:, (xs.min() + xs.max()) // 2:]] = 2
    return ids


@pytest.fixture()
def annotation_folder(tmp_path: Path, blackswan_small) -> tuple[Path, np.ndarray]:
    """<root>/Annotations/clip/00000.png (objects 1 and 2 on frame 0 only) and <root>/meta.json naming them."""
    _, mask = blackswan_small
    folder = tmp_path / "ann" / "Annotations" / "clip"
    folder.mkdir(parents=True)
    ids = two_objects(mask)
    save_id_mask(folder / "00000.png", ids)
    meta = {"videos": {"clip": {"objects": {"1": {"category": "neck", "frames": ["00000"]},
                                            "2": {"category": "body", "frames": ["00000"]}}}}}
    (tmp_path / "ann" / "meta.json").write_text(json.dumps(meta))
    return folder, ids


def test_track_from_a_davis_folder_then_from_its_coco_export(tmp_path: Path, blackswan_small, annotation_folder,
                                                             capsys) -> None:
    frames, _ = blackswan_small
    folder, ids = annotation_folder
    out = tmp_path / "run"
    assert main(["--quiet", "track", str(frames), "--out", str(out), "--init-from", str(folder), *TRACKER]) == 0
    objects = json.loads((out / "objects.json").read_text())
    assert {k: v["label"] for k, v in objects.items()} == {"1": "neck", "2": "body"}
    assert np.array_equal(load_id_mask(out / "masks" / "00000.png"), ids)
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:05d}.png" for i in range(6)]

    # The tracked run exports, and its COCO export starts the same objects again.
    coco = tmp_path / "run.json"
    summary = export_run(out, "coco", coco)
    assert summary.frames == 6 and summary.categories == ("neck", "body")
    again = tmp_path / "again"
    doc = json.loads(coco.read_text())
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] == 1]  # frame 0 only
    coco.write_text(json.dumps(doc))
    assert main(["--quiet", "track", str(frames), "--out", str(again), "--init-from", str(coco), *TRACKER]) == 0
    assert {k: v["label"] for k, v in json.loads((again / "objects.json").read_text()).items()} == \
        {"1": "neck", "2": "body"}
    for i in range(6):
        assert np.array_equal(load_id_mask(again / "masks" / f"{i:05d}.png"),
                              load_id_mask(out / "masks" / f"{i:05d}.png"))


def test_coco_images_match_by_name_then_index(tmp_path: Path, blackswan_small) -> None:
    frames, mask = blackswan_small
    h, w = mask.shape
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    seg = {"size": [h, w], "counts": rle["counts"].decode()}
    doc = {"images": [{"id": 7, "file_name": "x/00003.jpg", "width": w, "height": h}],
           "annotations": [{"id": 1, "image_id": 7, "category_id": 4, "segmentation": seg, "iscrowd": 0},
                           {"id": 2, "image_id": 7, "category_id": 4, "segmentation": seg, "iscrowd": 1}],
           "categories": [{"id": 4, "name": "swan"}]}
    file = tmp_path / "a.json"
    file.write_text(json.dumps(doc))
    with open_source(frames) as source:
        (obj,) = read_annotations(file, source.names, source.width, source.height)  # the crowd region is skipped
        assert (obj.frame, obj.obj_id, obj.label) == (3, 1, "swan") and np.array_equal(obj.mask, mask)
        doc["images"][0]["file_name"] = "other.jpg"  # no name matches: by position in id order
        file.write_text(json.dumps(doc))
        assert read_annotations(file, source.names, source.width, source.height)[0].frame == 0
        doc["images"][0]["frame_index"] = 4
        file.write_text(json.dumps(doc))
        assert read_annotations(file, source.names, source.width, source.height)[0].frame == 4
        doc["images"][0]["width"] = w * 2
        file.write_text(json.dumps(doc))
        with pytest.raises(InputError, match=f"is on a {2 * w}x{h} image, the frames are {w}x{h}"):
            load_annotations(file, source)


def test_an_object_given_on_several_frames_starts_from_its_first(tmp_path: Path, blackswan_small) -> None:
    frames, mask = blackswan_small
    folder = tmp_path / "gt"
    folder.mkdir()
    ids = two_objects(mask)
    save_id_mask(folder / "00002.png", ids)
    later = np.where(ids == 1, 3, ids).astype(np.uint8)  # object 2 again, and a new object 3
    save_id_mask(folder / "00004.png", later)
    with open_source(frames) as source:
        prompts = load_annotations(folder, source)
    assert sorted(prompts) == [2, 4]
    assert [np.array_equal(p.mask, ids == k) for k, p in enumerate(prompts[2], 1)] == [True, True]
    assert len(prompts[4]) == 1 and np.array_equal(prompts[4][0].mask, later == 3)


def test_bad_annotations_are_refused_before_tracking(tmp_path: Path, blackswan_small, capsys) -> None:
    frames, _ = blackswan_small
    folder = tmp_path / "gt"
    folder.mkdir()
    Image.new("L", (10, 10)).save(folder / "frame_9.png")
    out = tmp_path / "run"
    assert main(["track", str(frames), "--out", str(out), "--init-from", str(folder), *TRACKER]) == 1
    assert "not named like a frame of the input" in capsys.readouterr().err
    assert main(["track", str(frames), "--out", str(out), "--init-from", str(tmp_path / "none.json"), *TRACKER]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()
