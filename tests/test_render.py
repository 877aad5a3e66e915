"""`samtrack render` end to end on the DAVIS blackswan ground truth."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import davis_annotations, davis_frames
from PIL import Image

import samtrack.commands.render as render_module
from samtrack.cli import main
from samtrack.io.masks import load_id_mask, save_id_mask
from samtrack.io.overlay import boundary_mask


def linked_subset(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """Symlinked folders with the first `n` blackswan frames and ground-truth masks."""
    frames, masks = tmp_path / "frames", tmp_path / "gt"
    frames.mkdir()
    masks.mkdir()
    for i in range(n):
        (frames / f"{i:05d}.jpg").symlink_to(davis_frames("blackswan") / f"{i:05d}.jpg")
        (masks / f"{i:05d}.png").symlink_to(davis_annotations("blackswan") / f"{i:05d}.png")
    return frames, masks


def erode(mask: np.ndarray, steps: int) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=steps).astype(bool)


def test_render_blackswan_ground_truth(tmp_path: Path) -> None:
    out = tmp_path / "x"
    assert main(["--quiet", "render", str(davis_frames("blackswan")), str(davis_annotations("blackswan")),
                 "--out", str(out)]) == 0
    names = [f"{i:05d}.png" for i in range(50)]
    assert sorted(p.name for p in (out / "masks").iterdir()) == names
    with Image.open(out / "masks" / "00000.png") as im:
        assert im.mode == "P"
    assert np.array_equal(load_id_mask(out / "masks" / "00010.png"),
                          load_id_mask(davis_annotations("blackswan") / "00010.png"))
    with zipfile.ZipFile(out / "masks.zip") as z:
        assert sorted(z.namelist()) == names
    rle = json.loads((out / "masks_rle.json").read_text())
    assert [o["id"] for o in rle["objects"]] == [1] and len(rle["objects"][0]["frames"]) == 50
    with Image.open(out / "overlay.gif") as im:
        assert im.n_frames == 17
    with av.open(str(out / "overlay.mp4")) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        assert stream.average_rate == 30
    assert len(frames) == 50 and frames[0].shape == (480, 854, 3)

    # The swan is visibly coloured (DAVIS id 1 is dark red) and the background is left alone.
    original = np.asarray(Image.open(davis_frames("blackswan") / "00025.jpg").convert("RGB")).astype(float)
    swan = load_id_mask(davis_annotations("blackswan") / "00025.png").astype(bool)
    inside = erode(swan, 4)
    outside = erode(~swan, 4)
    shown = frames[25].astype(float)
    red_gain = (shown[inside, 0] - original[inside, 0]).mean()
    assert red_gain > 15
    assert (shown[inside, 0] - shown[inside, 1]).mean() > 50
    assert np.abs(shown[outside] - original[outside]).mean() < 6
    contour = boundary_mask(swan.astype(np.uint8))
    assert shown[contour].mean() < original[contour].mean() - 20  # a dark outline around the swan


def test_render_from_video_with_binary_masks(tmp_path: Path, blackswan_mp4: Path) -> None:
    out = tmp_path / "v"
    assert main(["--quiet", "render", str(blackswan_mp4), str(davis_annotations("blackswan")),
                 "--out", str(out), "--no-video", "--no-gif", "--labels", '{"1": "swan"}']) == 0
    assert not (out / "overlay.mp4").exists() and not (out / "overlay.gif").exists()
    assert len(list((out / "masks").glob("*.png"))) == 50
    assert json.loads((out / "objects.json").read_text())["1"]["label"] == "swan"
    run = json.loads((out / "run.json").read_text())
    assert run["source"]["kind"] == "VideoSource" and run["settings"]["command"] == "render"


def test_missing_mask_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames, masks = linked_subset(tmp_path, 4)
    (masks / "00002.png").unlink()
    assert main(["render", str(frames), str(masks), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "00002.png" in err and "no mask" in err


def test_bad_options_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames, masks = linked_subset(tmp_path, 2)
    out = str(tmp_path / "o")
    assert main(["render", str(frames), str(masks), "--out", out, "--labels", "{not json"]) == 2  # usage errors
    assert main(["render", str(frames), str(masks), "--out", out, "--labels", '{"swan": "1"}']) == 2
    assert main(["render", str(frames), str(masks), "--out", out, "--alpha", "2"]) == 2
    assert main(["render", str(frames), str(tmp_path / "nowhere"), "--out", out]) == 1
    small = tmp_path / "small"
    save_id_mask(small / "00000.png", np.zeros((48, 85), np.uint8))
    save_id_mask(small / "00001.png", np.zeros((48, 85), np.uint8))
    assert main(["render", str(frames), str(small), "--out", out]) == 1
    err = capsys.readouterr().err
    assert "--labels" in err and "--alpha" in err and "nowhere" in err
    assert "00000.png is 85x48 but the frames are 854x480" in err
    with pytest.raises(SystemExit) as exc:
        main(["render", str(frames)])
    assert exc.value.code == 2


def test_labels_from_a_file_and_palette_masks(tmp_path: Path) -> None:
    frames, _ = linked_subset(tmp_path, 3)
    masks = tmp_path / "palette"
    for i in range(3):
        ids = load_id_mask(davis_annotations("blackswan") / f"{i:05d}.png") * 4
        ids[:20, :20] = 9
        save_id_mask(masks / f"{i:05d}.png", ids)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"4": {"label": "swan", "prompt": {"text": "black swan"}}, "9": "corner"}))
    out = tmp_path / "o"
    assert main(["--quiet", "render", str(frames), str(masks), "--out", str(out), "--labels", str(labels),
                 "--draw-labels", "--show-ids", "--no-gif"]) == 0
    objects = json.loads((out / "objects.json").read_text())
    assert objects["4"]["label"] == "swan" and objects["4"]["prompt"] == {"text": "black swan"}
    assert objects["9"]["label"] == "corner" and objects["9"]["num_frames"] == 3
    # Re-rendering a run in place (MASKS is the run's own masks/ folder) works too.
    assert main(["--quiet", "render", str(frames), str(out / "masks"), "--out", str(out),
                 "--labels", str(out / "objects.json"), "--no-gif"]) == 0
    assert json.loads((out / "objects.json").read_text())["4"]["label"] == "swan"


def test_resume_after_an_interrupted_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    n = 8
    frames, masks = linked_subset(tmp_path, n)
    out = tmp_path / "o"
    args = ["render", str(frames), str(masks), "--out", str(out), "--no-gif"]
    real_load = render_module.load_id_mask
    loads: list[Path] = []

    def interrupted_after_five(path: Path) -> np.ndarray:
        if len(loads) == 5:
            raise KeyboardInterrupt
        loads.append(path)
        return real_load(path)

    monkeypatch.setattr(render_module, "load_id_mask", interrupted_after_five)
    assert main(args) == 130
    written = sorted(p.name for p in (out / "masks").iterdir())
    assert written == [f"{i:05d}.png" for i in range(5)]  # every finished mask, complete, no temp files
    assert all(np.array_equal(load_id_mask(out / "masks" / name), real_load(masks / name)) for name in written)
    assert not (out / "overlay.mp4").exists() and not (out / "masks.zip").exists()

    monkeypatch.setattr(render_module, "load_id_mask", real_load)
    capsys.readouterr()
    assert main(args) == 0
    assert "masks written 3, reused 5" in capsys.readouterr().out
    with av.open(str(out / "overlay.mp4")) as c:
        assert len(list(c.decode(video=0))) == n

    # A mask edited after the render is picked up again; the others are reused.
    edited = tmp_path / "edited"
    edited.mkdir()
    for i in range(n):
        (edited / f"{i:05d}.png").symlink_to(masks / f"{i:05d}.png")
    (edited / "00003.png").unlink()
    save_id_mask(edited / "00003.png", np.zeros((480, 854), np.uint8))
    future = (out / "masks" / "00003.png").stat().st_mtime_ns + 10**9
    os.utime(edited / "00003.png", ns=(future, future))
    assert main(["render", str(frames), str(edited), "--out", str(out), "--no-gif"]) == 0
    assert "masks written 1, reused 7" in capsys.readouterr().out
    assert not load_id_mask(out / "masks" / "00003.png").any()
