"""The command line as a newcomer meets it (issue 23): exit codes, output, names people use, the
workflows SAM 2 users expect (refine an object on a later frame, labelled boxes, --start, a default
--out)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEAOT_FIXTURES, davis_annotations, davis_frames
from PIL import Image

from samtrack import cli
from samtrack.models import registry

DEAOT = ["--tracker", "deaot-t", "--checkpoint", str(DEAOT_FIXTURES / "deaott.pth")]
QUIET = ["--no-gif", "--no-video"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clip") / "blackswan"
    out.mkdir()
    for path in sorted(davis_frames("blackswan").glob("*.jpg"))[:8]:
        Image.open(path).resize((213, 120), Image.BILINEAR).save(out / path.name)
    return out


def swan(i: int) -> np.ndarray:
    im = Image.open(davis_annotations("blackswan") / f"{i:05d}.png")
    return np.array(im.resize((213, 120), Image.NEAREST)) > 0


def mask_file(folder: Path, name: str, mask: np.ndarray) -> str:
    """Save a mask in `folder` (beside the prompts file's folder); its path as the prompts file gives it."""
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / name)
    return f"{folder.name}/{name}"


@pytest.mark.parametrize("extra, says", [
    (["--box", "10,10,5,5"], "has no area"),
    (["--box", "10,10,50,50", "--end", "99"], "--end 99) is outside the video"),
    (["--frame", "40", "--box", "10,10,50,50"], "frame 40 is outside the video"),
    (["--box", "10,10,50,50", "--tracker", "r51-deaotl"], "unknown tracker model 'r51-deaotl'"),
    (["--object-id", "3", "--click", "20,20"], "refines object 3, which does not exist"),
    (["--box", "10,10,50,50", "--start", "3"], "comes before --start 3"),
])
def test_usage_errors_exit_2_with_one_line(clip, tmp_path, capsys, extra, says):
    code = cli.main(["-q", "track", str(clip), "--out", str(tmp_path / "run"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_a_corrupt_input_is_an_error_not_a_usage_error(tmp_path, capsys):
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    assert cli.main(["-q", "track", str(tmp_path / "clip.mp4"), "--auto", "--out", str(tmp_path / "r")]) == 1


def test_refine_an_object_on_a_later_frame_and_label_a_box(clip, tmp_path, capsys):
    """`--object-id 1 --frame 4` gives object 1 a new mask there (SAM 2's add_new_mask on an existing id);
    `--object LABEL --box` labels a box object; the same in a prompts file with `id:`."""
    masks = tmp_path / "m"
    masks.mkdir()
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(json.dumps([{"frame": 0, "label": "swan", "mask": mask_file(masks, "a.png", swan(0))},
                                   {"frame": 4, "id": 1, "mask": mask_file(masks, "b.png", swan(4))}]))
    out = tmp_path / "run"
    code = cli.main(["-q", "track", str(clip), "--out", str(out), "--prompts", str(prompts), "--frame", "2",
                     "--object", "corner", "--box", "0,0,40,30", "--segmenter", str(tmp_path / "none"), *DEAOT, *QUIET])
    assert code == 2  # the box needs a segmenter, and none exists at that path: refused before tracking
    code = cli.main(["-q", "--debug", "track", str(clip), "--out", str(out), "--prompts", str(prompts), *DEAOT, *QUIET])
    assert code == 0
    objects = json.loads((out / "objects.json").read_text())
    assert list(objects) == ["1"] and objects["1"]["label"] == "swan"  # refined, not a second object
    frame4 = np.array(Image.open(out / "masks" / "00004.png"))
    assert np.array_equal(frame4 == 1, swan(4))  # the given mask is the truth on frame 4


def test_cli_prompt_grouping_gives_boxes_labels_and_ids():
    from samtrack.tracking import prompts as P

    items = [("object", "swan"), ("box", [1, 1, 9, 9]), ("frame", 5), ("object_id", 1), ("click", [3, 3]),
             ("click", [4, 4, "neg"]), ("stroke", [[1, 1], [5, 5]])]
    got = P.group_cli_items(items)
    assert isinstance(got[0][0], P.Box) and got[0][0].label == "swan" and got[0][0].obj_id is None
    click, stroke = got[5]
    assert isinstance(click, P.Click) and click.obj_id == 1 and click.labels == (1, 0)
    assert isinstance(stroke, P.Stroke) and stroke.obj_id is None and stroke.label is None


def test_start_auto_mode_and_default_out(clip, tiny_sam, tmp_path, monkeypatch, capsys):
    from samtrack.tracking.session import Session

    monkeypatch.chdir(tmp_path)
    calls = []
    real = Session.propagate

    def spy(self, start=0, end=None, direction="forward", discover=False, **kw):
        calls.append((start, end, direction, discover))
        raise KeyboardInterrupt  # enough: the pass was asked to start at --start

    monkeypatch.setattr(Session, "propagate", spy)
    assert cli.main(["-q", "track", str(clip), "--auto", "--start", "3", "--segmenter", tiny_sam, *DEAOT, *QUIET]) == 130
    assert calls == [(3, None, "forward", True)]
    assert "run the same command with --resume" in capsys.readouterr().err
    monkeypatch.setattr(Session, "propagate", real)
    assert Path("runs/blackswan/session.json").is_file() or not Path("runs/blackswan").exists()
    from samtrack.commands.track import default_out

    Path("runs/blackswan").mkdir(parents=True, exist_ok=True)
    assert default_out(str(clip), resume=False) == Path("runs/blackswan-2")
    Path("runs/blackswan-2").mkdir()
    assert default_out(str(clip), resume=True) == Path("runs/blackswan-2")


def test_success_is_a_sentence_or_json(clip, tmp_path, capsys):
    masks = tmp_path / "m"
    masks.mkdir()
    prompts = tmp_path / "p.yaml"
    prompts.write_text(json.dumps([{"frame": 0, "mask": mask_file(masks, "a.png", swan(0))}]))
    assert cli.main(["-q", "track", str(clip), "--out", str(tmp_path / "a"), "--prompts", str(prompts), "--end", "3",
                     *DEAOT, *QUIET]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("Tracked 4 frames (frames 0-3 of 8) with 1 object ") and str(tmp_path / "a") in out
    assert cli.main(["-q", "track", str(clip), "--out", str(tmp_path / "b"), "--prompts", str(prompts), "--end", "3",
                     "--json", *DEAOT, *QUIET]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tracked"] == 4 and result["first"] == 0 and result["last"] == 3


def test_help_has_no_default_noise_and_pipes_cleanly():
    help_text = subprocess.run([sys.executable, "-m", "samtrack", "track", "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "(default: None)" not in help_text and "(default: 10) (default: 10)" not in help_text
    piped = subprocess.run(f"{sys.executable} -m samtrack track --help | head -c 20", shell=True,
                           capture_output=True, text=True, check=True)
    assert "BrokenPipeError" not in piped.stderr and "Traceback" not in piped.stderr


def test_hub_ids_name_registry_models():
    assert registry.find_spec("facebook/sam-vit-base").name == "sam-vit-b"
    assert registry.find_spec("facebook/sam2.1-hiera-tiny", "tracker").name == "sam2.1-tiny"


def test_a_checkpoint_file_names_its_deaot_variant(tmp_path):
    from samtrack.models.trackers import load_tracker

    named = tmp_path / "DeAOTT_PRE_YTB_DAV.pth"
    named.write_bytes((DEAOT_FIXTURES / "deaott.pth").read_bytes())
    trk = load_tracker(str(named), precision="fp32")
    assert trk.cfg.name == "deaot-t"


def test_eval_takes_a_run_directory_and_render_takes_a_partial_run(clip, tmp_path, capsys):
    """`samtrack eval RUN GT` scores a run's masks/; a partial run's message says --max-frames; `render
    --covered` renders only the frames the partial run covers."""
    from conftest import davis_annotations as gt_folder

    masks = tmp_path / "m"
    masks.mkdir()
    prompts = tmp_path / "p.yaml"
    prompts.write_text(json.dumps([{"frame": 0, "mask": mask_file(masks, "a.png", swan(0))}]))
    run = tmp_path / "run"
    assert cli.main(["-q", "track", str(clip), "--out", str(run), "--prompts", str(prompts), "--end", "4",
                     *DEAOT, *QUIET]) == 0
    gt = tmp_path / "gt"
    gt.mkdir()
    for i in range(8):  # the ground truth at the clip's size
        Image.fromarray(swan(i).astype(np.uint8) * 255).save(gt / f"{i:05d}.png")
    assert gt_folder("blackswan").is_dir()
    code = cli.main(["-q", "eval", str(run), str(gt)])
    err = capsys.readouterr().err
    assert code == 1 and "cover the first 5 frames" in err and "--max-frames 5" in err
    assert cli.main(["-q", "eval", str(run), str(gt), "--max-frames", "5"]) == 0
    assert "J&F" in capsys.readouterr().out
    out = tmp_path / "render"
    assert cli.main(["-q", "render", str(clip), str(run / "masks"), "--out", str(out)]) == 1
    assert "--covered" in capsys.readouterr().err
    assert cli.main(["-q", "render", str(clip), str(run / "masks"), "--out", str(out), "--covered", "--no-video"]) == 0
    assert json.loads((out / "run.json").read_text())["frames"]["covered"] == [[0, 4]]


def test_track_and_batch_export_the_finished_run(clip, tmp_path):
    """`--export FORMAT` (track and batch take it alike: it is a TrackJob field) writes <out>/exports/."""
    from samtrack.commands.track import job_from_args

    masks = tmp_path / "m"
    masks.mkdir()
    prompts = tmp_path / "p.yaml"
    prompts.write_text(json.dumps([{"frame": 0, "label": "swan", "mask": mask_file(masks, "a.png", swan(0))}]))
    out = tmp_path / "run"
    assert cli.main(["-q", "track", str(clip), "--out", str(out), "--prompts", str(prompts), "--end", "3",
                     "--export", "coco", "--export", "yolo", *DEAOT, *QUIET]) == 0
    coco = json.loads((out / "exports" / "coco.json").read_text())
    assert len(coco["images"]) == 4 and {c["name"] for c in coco["categories"]} == {"swan"}
    assert (out / "exports" / "yolo" / "data.yaml").is_file()
    args = cli.build_parser().parse_args(["batch", "x", "--out", "o", "--auto", "--export", "cvat"])
    assert job_from_args(args, input="", out="o").exports == ("cvat",)
