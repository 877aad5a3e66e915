"""`samtrack export`: runs made from DAVIS ground truth, written in every format and read back with the
formats' own readers (pycocotools COCO/COCOeval, Ultralytics' rasterisation, CVAT's track semantics,
`samtrack eval`)."""

from __future__ import annotations

import contextlib
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
import yaml
from conftest import DATA, davis_annotations, davis_frames
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samtrack.cli import main
from samtrack.errors import InputError, OutputError
from samtrack.io.export import export_run, read_run
from samtrack.io.masks import load_id_mask
from samtrack.io.outputs import RunWriter
from samtrack.io.rundir import LOCK_FILE, RunLock, reading_run
from samtrack.io.sources import open_source

SEQ = "blackswan"
N_COVERED = 10  # frames 0-9 of the 50 are covered
EMPTY_FRAME = 5
BIKE_AWAY = (3, 4)  # object 2 leaves on these frames and comes back
DOG_FRAMES = range(3)  # object 3 is seen on frames 0-2 only
STRIPE = slice(400, 406)  # cut out of the swan: it is in two parts


def gt(seq: str, index: int) -> np.ndarray:
    return load_id_mask(davis_annotations(seq) / f"{index:05d}.png") > 0


def scene(index: int) -> np.ndarray:
    """The id mask of frame `index`: 1 the swan cut in two parts, 2 the bmx-trees rider and bike (many parts,
    holes), away on frames 3-4, 3 the dog on frames 0-2; frame 5 is empty."""
    ids = np.zeros((480, 854), dtype=np.uint8)
    if index == EMPTY_FRAME:
        return ids
    ids[gt(SEQ, index)] = 1
    ids[:, STRIPE] = 0
    if index not in BIKE_AWAY:
        ids[gt("bmx-trees", index) & (ids == 0)] = 2
    if index in DOG_FRAMES:
        ids[gt("dog", index) & (ids == 0)] = 3
    return ids


def make_run(out: Path, source_path: Path, covered: int) -> Path:
    with open_source(source_path) as source, RunWriter(out, source) as run:
        for i in range(covered):
            run.write_mask(i, scene(i))
        run.finalize(objects={1: "swan", 3: {"label": "dog", "prompt": None}}, frames=range(covered),
                     video=False, gif=False, progress=False)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run over the DAVIS blackswan frame folder covering frames 0-9 of 50."""
    return make_run(tmp_path_factory.mktemp("run") / "run", davis_frames(SEQ), N_COVERED)


@pytest.fixture(scope="module")
def video_run(tmp_path_factory) -> Path:
    """A run over blackswan.mp4 covering frames 0-3."""
    return make_run(tmp_path_factory.mktemp("vrun") / "run", DATA / "videos" / "blackswan.mp4", 4)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def present(index: int) -> list[int]:
    return [int(i) for i in np.unique(scene(index)) if i]


def test_scene_has_what_the_formats_must_handle() -> None:
    swan = (scene(0) == 1).astype(np.uint8)
    assert cv2.connectedComponents(swan)[0] - 1 == 2  # the swan is in two parts
    bike = (scene(0) == 2).astype(np.uint8)
    _, hierarchy = cv2.findContours(bike, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    assert (hierarchy[0][:, 3] >= 0).any()  # the bike has holes
    assert present(EMPTY_FRAME) == [] and 2 not in present(3) and 2 in present(6)


def quiet_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def coco_ap(coco: COCO, run: Path) -> float:
    """COCOeval segm AP of the run's own masks (as detections, score 1) against the export."""
    results = []
    rle = json.loads((run / "masks_rle.json").read_text())
    category = {a["track_id"]: a["category_id"] for a in coco.loadAnns(coco.getAnnIds())}
    for obj in rle["objects"]:
        for f in obj["frames"]:
            results.append({"image_id": f["frame"] + 1, "category_id": category[obj["id"]],
                            "segmentation": f["segmentation"], "score": 1.0})
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(coco, coco.loadRes(results), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def test_coco_rle_reads_back_exactly_and_scores_ap_1(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "coco.json"
    summary = export_run(run_dir, "coco", out)
    coco = quiet_coco(out)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["swan", "object", "dog"]
    images = coco.loadImgs(coco.getImgIds())
    assert [im["file_name"] for im in images] == [f"{i:05d}.jpg" for i in range(N_COVERED)]
    assert all((im["width"], im["height"]) == (854, 480) for im in images)
    for im in images:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=im["id"]))
        assert sorted(a["track_id"] for a in anns) == present(im["frame_index"])
        for a in anns:
            truth = scene(im["frame_index"]) == a["track_id"]
            assert np.array_equal(coco.annToMask(a).astype(bool), truth)
            assert a["area"] == truth.sum() and a["iscrowd"] == 0 and a["attributes"] == {"track_id": a["track_id"]}
            ys, xs = np.nonzero(truth)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert coco_ap(coco, run_dir) == 1.0
    assert summary.frames == N_COVERED and summary.objects == 3
    assert summary.masks == sum(len(present(i)) for i in range(N_COVERED))
    assert "frames 10-49 are not covered by the run and were left out" in summary.line()


def test_coco_polygons_with_frames(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data" / "clip.json"
    summary = export_run(run_dir, "coco", out, polygons=True, with_frames=True, classes={2: "bike"})
    coco = quiet_coco(out)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["swan", "bike", "dog"]
    ious, parts = [], {}
    for a in coco.loadAnns(coco.getAnnIds()):
        frame = a["image_id"] - 1
        assert isinstance(a["segmentation"], list) and all(len(p) >= 6 for p in a["segmentation"])
        parts[(frame, a["track_id"])] = len(a["segmentation"])
        ious.append(iou(coco.annToMask(a).astype(bool), scene(frame) == a["track_id"]))
    assert min(ious) >= 0.9, ious
    assert min(ious) > 0.999  # outlines traced on pixel edges: the rasterised polygons are the masks
    assert parts[(0, 1)] == 2  # the swan's two parts are two polygons
    assert coco_ap(coco, run_dir) == 1.0
    # The frames lie beside the JSON under the names it gives, copied from the input.
    assert summary.images == tmp_path / "data" / "images"
    for im in coco.loadImgs(coco.getImgIds()):
        path = summary.images / im["file_name"]
        assert path.read_bytes() == (davis_frames(SEQ) / im["file_name"]).read_bytes()
    assert sorted(p.name for p in summary.images.iterdir()) == [f"{i:05d}.jpg" for i in range(N_COVERED)]


def ultralytics_rasterise(line: str, width: int, height: int) -> tuple[int, np.ndarray]:
    """A label line drawn the way Ultralytics does (polygon2mask: de-normalise, int32, cv2.fillPoly)."""
    values = line.split()
    xy = np.array(values[1:], dtype=np.float64).reshape(-1, 2) * [width, height]
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [xy.astype(np.int32)], color=1)
    return int(values[0]), mask.astype(bool)


def test_yolo_polygons_rasterise_back_to_the_masks(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    export_run(run_dir, "yolo", out, classes="3=dog")
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "swan", 1: "object", 2: "dog"} and data["train"] == data["val"] == "images"
    assert "path" not in data  # Ultralytics then resolves images/ beside data.yaml
    stems = [f"{i:05d}" for i in range(N_COVERED)]
    assert sorted(p.stem for p in (out / "images").iterdir()) == stems
    assert sorted(p.stem for p in (out / "labels").iterdir()) == stems
    classes = {1: 0, 2: 1, 3: 2}
    for i, stem in enumerate(stems):
        lines = (out / "labels" / f"{stem}.txt").read_text().splitlines()
        assert len(lines) == len(present(i))  # one line per object; none on the empty frame
        for line in lines:
            values = np.array(line.split()[1:], dtype=float)
            assert values.min() >= 0 and values.max() <= 1 and len(values) % 2 == 0
            cls, mask = ultralytics_rasterise(line, 854, 480)
            obj_id = {v: k for k, v in classes.items()}[cls]
            assert iou(mask, scene(i) == obj_id) >= 0.9, (i, obj_id)
    assert (out / "labels" / f"{EMPTY_FRAME:05d}.txt").read_text() == ""


def cvat_visible(track: ET.Element, n_frames: int) -> dict[int, str]:
    """frame -> points where CVAT shows the track: each keyframe holds until the next, outside hides it."""
    keyframes = {int(p.get("frame")): p for p in track if p.get("keyframe") == "1"}
    visible, current = {}, None
    for f in range(n_frames):
        current = keyframes.get(f, current)
        if current is not None and current.get("outside") == "0":
            visible[f] = current.get("points")
    return visible


def test_cvat_xml_follows_the_1_1_schema_and_track_semantics(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.xml"
    export_run(run_dir, "cvat", out)
    root = ET.parse(out).getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    for tag in ("id", "name", "size", "mode", "overlap", "created", "updated", "labels", "segments", "owner",
                "original_size"):
        assert task.find(tag) is not None, tag
    assert task.findtext("size") == "50" and task.findtext("mode") == "interpolation"
    assert (task.findtext("original_size/width"), task.findtext("original_size/height")) == ("854", "480")
    assert task.findtext("segments/segment/start") == "0" and task.findtext("segments/segment/stop") == "49"
    labels = [label.findtext("name") for label in task.findall("labels/label")]
    assert labels == ["swan", "object", "dog"]
    assert root.find("meta/dumped") is not None
    tracks = root.findall("track")
    assert [t.get("id") for t in tracks] == ["1", "2", "3"]
    assert [t.get("label") for t in tracks] == ["swan", "object", "dog"]
    for track in tracks:
        assert {shape.tag for shape in track} == {"polygon"}
        for shape in track:
            assert set(shape.attrib) >= {"frame", "keyframe", "outside", "occluded", "points"}
            assert shape.get("outside") in ("0", "1") and shape.get("keyframe") in ("0", "1")
            pairs = [tuple(map(float, pt.split(","))) for pt in shape.get("points").split(";")]
            assert len(pairs) >= 3
        obj_id = int(track.get("id"))
        visible = cvat_visible(track, 50)
        assert sorted(visible) == [i for i in range(N_COVERED) if obj_id in present(i)], obj_id
        for f, points in visible.items():
            xy = np.array([pt.split(",") for pt in points.split(";")], dtype=np.float64)
            rle = mask_utils.frPyObjects([xy.ravel().tolist()], 480, 854)
            assert iou(mask_utils.decode(rle)[..., 0].astype(bool), scene(f) == obj_id) >= 0.9
    bike = cvat_visible(tracks[1], 50)
    assert 2 in bike and 3 not in bike and 6 in bike  # it leaves and comes back
    assert max(cvat_visible(tracks[0], 50)) == N_COVERED - 1  # not carried into the frames not covered


def test_davis_export_scores_j_and_f_1_against_the_run(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "davis"
    summary = export_run(run_dir, "davis", out)
    assert summary.categories == ()
    names = [f"{i:05d}" for i in range(N_COVERED)]
    assert sorted(p.stem for p in (out / "JPEGImages" / SEQ).iterdir()) == names
    assert sorted(p.stem for p in (out / "Annotations" / SEQ).iterdir()) == names
    with Image.open(out / "Annotations" / SEQ / "00000.png") as im:
        assert im.mode == "P"
    scores = tmp_path / "scores.json"
    assert main(["--quiet", "eval", str(run_dir / "masks"), str(out), "--all-frames", "--json", str(scores)]) == 0
    report = json.loads(scores.read_text())
    assert report["summary"]["J&F-Mean"] == 1.0
    assert sorted(o["object"] for o in report["objects"]) == [1, 2, 3]
    # The export is a DAVIS sequence samtrack opens as such.
    with open_source(out, sequence=SEQ) as source:
        assert source.names == names and source.annotations == out / "Annotations" / SEQ


def test_ytvos_meta_lists_objects_categories_and_frames(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ytvos"
    export_run(run_dir, "ytvos", out)
    meta = json.loads((out / "meta.json").read_text())["videos"][SEQ]["objects"]
    assert {k: v["category"] for k, v in meta.items()} == {"1": "swan", "2": "object", "3": "dog"}
    for obj_id, entry in meta.items():
        assert entry["frames"] == [f"{i:05d}" for i in range(N_COVERED) if int(obj_id) in present(i)]
    for i in range(N_COVERED):
        assert np.array_equal(load_id_mask(out / "Annotations" / SEQ / f"{i:05d}.png"), scene(i))


def test_video_input_frames_are_decoded_to_jpeg(video_run: Path, tmp_path: Path) -> None:
    summary = export_run(video_run, "yolo", tmp_path / "yolo")
    images = sorted((tmp_path / "yolo" / "images").iterdir())
    assert [p.name for p in images] == [f"{i:05d}.jpg" for i in range(4)]
    with open_source(DATA / "videos" / "blackswan.mp4") as source:
        frame = np.asarray(Image.open(images[2]).convert("RGB"), dtype=np.int16)
        assert np.abs(frame - source[2]).mean() < 3  # JPEG quality 95 of the decoded frame
    assert "frames 4-49 are not covered" in summary.line()


def test_cli_summary_and_json(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "c.json"
    assert main(["--quiet", "export", str(run_dir), "--format", "coco", "--out", str(out),
                 "--classes", "1=bird,2=bike"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("exported 10 frames (3 objects, ") and "categories bird, bike, dog" in line
    assert main(["--quiet", "export", str(run_dir), "-f", "cvat", "-o", str(tmp_path / "c.xml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "cvat" and data["uncovered"] == [[10, 49]] and data["objects"] == 3


def test_exports_read_back_as_init_prompts(run_dir: Path, tmp_path: Path) -> None:
    from samtrack.tracking.prompts import MaskPrompt, load_annotations

    export_run(run_dir, "coco", tmp_path / "c.json", polygons=True)
    export_run(run_dir, "ytvos", tmp_path / "yt")
    with open_source(davis_frames(SEQ)) as source:
        for path in (tmp_path / "c.json", tmp_path / "yt" / "Annotations" / SEQ):
            prompts = load_annotations(path, source)
            # each object from the first frame it is on, with its label
            assert list(prompts) == [0]
            assert [(p.label, int(np.argmax(np.bincount(scene(0)[p.mask])))) for p in prompts[0]] == \
                [("swan", 1), ("object", 2), ("dog", 3)]
            assert all(isinstance(p, MaskPrompt) and np.array_equal(p.mask, scene(0) == k + 1)
                       for k, p in enumerate(prompts[0]))


# ------------------------------------------------------------------------------------------ bad input

def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_not_a_run_is_refused(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "notarun"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    assert main(["export", str(folder), "-f", "coco", "-o", str(tmp_path / "o.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a samtrack run" in err
    assert main(["export", str(tmp_path / "missing"), "-f", "yolo", "-o", str(tmp_path / "y")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert listing(tmp_path) == ["notarun", "notarun/notes.txt"]


def test_unknown_format_is_a_usage_error(run_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run_dir), "-f", "voc", "-o", str(tmp_path / "x")])
    assert exc.value.code == 2 and "invalid choice: 'voc'" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown export format 'voc'"):
        export_run(run_dir, "voc", tmp_path / "x")
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run_dir), "-f", "coco", "-o", str(tmp_path / "x.json"), "--classes", "swan"])
    assert exc.value.code == 2 and "is not ID=NAME" in capsys.readouterr().err
    assert listing(tmp_path) == []


def test_options_that_do_not_apply_are_refused(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="one .json file"):
        export_run(run_dir, "coco", tmp_path / "coco")
    with pytest.raises(InputError, match="--polygons applies to coco"):
        export_run(run_dir, "davis", tmp_path / "d", polygons=True)
    with pytest.raises(InputError, match="--with-frames applies to coco"):
        export_run(run_dir, "cvat", tmp_path / "c.xml", with_frames=True)
    with pytest.raises(InputError, match="classes name object 7, which the run does not have"):
        export_run(run_dir, "coco", tmp_path / "c.json", classes={7: "cat"})
    with pytest.raises(OutputError, match="holds the run"):
        export_run(run_dir, "yolo", run_dir, force=True)
    assert listing(tmp_path) == []


def test_a_run_being_written_is_refused(run_dir: Path, tmp_path: Path, capsys) -> None:
    lock = RunLock.open(run_dir)
    try:
        assert main(["export", str(run_dir), "-f", "coco", "-o", str(tmp_path / "c.json")]) == 1
        err = capsys.readouterr().err.strip()
        assert "is being written by a samtrack run (pid" in err and err.count("\n") == 0
    finally:
        lock.release()
    assert listing(tmp_path) == []
    # An export reading the run keeps a writer out until it is done, then leaves no lock file behind.
    with reading_run(run_dir):
        with pytest.raises(OutputError, match="in use by another samtrack run"):
            RunLock.open(run_dir)
        with reading_run(run_dir):  # readers share it
            pass
    assert not (run_dir / LOCK_FILE).exists()


def test_an_unfinished_session_run_is_refused(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "masks").mkdir(parents=True)
    (run / "session.json").write_text(json.dumps({"version": 1, "finalized": False}))
    with pytest.raises(InputError, match="is not finished: its outputs are not written yet"):
        export_run(run, "coco", tmp_path / "c.json")
    for name in ("run.json", "masks_rle.json", "objects.json"):
        (run / name).write_bytes((run_dir / name).read_bytes())
    with pytest.raises(InputError, match="changed after its outputs were written"):
        export_run(run, "coco", tmp_path / "c.json")
    (run / "session.json").write_text(json.dumps({"version": 1, "finalized": True}))
    assert export_run(run, "coco", tmp_path / "c.json").frames == N_COVERED


def test_existing_out_needs_force(run_dir: Path, tmp_path: Path, capsys) -> None:
    out, folder = tmp_path / "c.json", tmp_path / "yolo"
    out.write_text("keep")
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    assert main(["export", str(run_dir), "-f", "coco", "-o", str(out)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["export", str(run_dir), "-f", "yolo", "-o", str(folder)]) == 1
    assert out.read_text() == "keep" and listing(folder) == ["mine.txt"]
    with pytest.raises(OutputError, match="exists and is not a folder"):
        export_run(run_dir, "davis", out, force=True)
    assert main(["--quiet", "export", str(run_dir), "-f", "yolo", "-o", str(folder), "--force"]) == 0
    assert "mine.txt" not in listing(folder) and (folder / "data.yaml").is_file()
    assert main(["--quiet", "export", str(run_dir), "-f", "coco", "-o", str(out), "--force"]) == 0
    assert quiet_coco(out).getImgIds()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "yolo"]  # no temporary left


def test_an_interrupted_export_leaves_nothing(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("samtrack.io.export.yolo.label_lines", fail)
    with pytest.raises(KeyboardInterrupt):
        export_run(run_dir, "yolo", tmp_path / "yolo")
    monkeypatch.setattr("samtrack.io.export.coco.part_polygons", fail)
    (tmp_path / "c.json").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        export_run(run_dir, "coco", tmp_path / "c.json", polygons=True, with_frames=True, force=True)
    assert listing(tmp_path) == ["c.json"] and (tmp_path / "c.json").read_text() == "old"


def test_missing_input_is_named_when_frames_are_needed(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("masks_rle.json", "objects.json"):
        (run / name).write_bytes((run_dir / name).read_bytes())
    info = json.loads((run_dir / "run.json").read_text())
    info["source"]["path"] = str(tmp_path / "gone")
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match="the run's input .*gone is missing"):
        export_run(run, "yolo", tmp_path / "y")
    summary = export_run(run, "coco", tmp_path / "c.json")  # no frames needed: names are assumed
    assert "image file names assume <frame>.jpg" in summary.line()
    assert read_run(run).sequence == "gone"
