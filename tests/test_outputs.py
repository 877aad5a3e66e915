"""Mask PNGs, overlay rendering, video writers and the run directory (RunWriter)."""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path

import av
import numpy as np
import pycocotools.mask as mask_utils
import pytest
from conftest import davis_annotations, davis_frames
from PIL import Image

import samtrack.io.outputs as outputs_module
from samtrack.errors import InputError
from samtrack.io.masks import DAVIS_PALETTE, id_color, load_id_mask, save_id_mask
from samtrack.io.outputs import RunWriter
from samtrack.io.overlay import boundary_mask, render_overlay
from samtrack.io.sources import FrameSource, open_source
from samtrack.io.video import GifWriter, Mp4Writer


def subset(tmp_path: Path, seq: str = "blackswan", n: int = 6) -> FrameSource:
    """The first `n` frames of a DAVIS sequence as an image-folder source (symlinks, no copies)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(n):
        (folder / f"{i:05d}.jpg").symlink_to(davis_frames(seq) / f"{i:05d}.jpg")
    return open_source(folder)


def gt(seq: str, i: int) -> np.ndarray:
    return load_id_mask(davis_annotations(seq) / f"{i:05d}.png")


def multi_object_masks(n: int) -> list[np.ndarray]:
    """Swan split into ids 1 (left) and 2 (right), plus id 7 as a box on frames 2..3 only."""
    masks = []
    for i in range(n):
        ids = gt("blackswan", i)
        ids[:, 400:][ids[:, 400:] == 1] = 2
        if 2 <= i <= 3:
            ids[10:40, 20:90] = 7
        masks.append(ids)
    return masks


def no_temps(folder: Path) -> bool:
    return not list(folder.rglob(".*.tmp"))


# ------------------------------------------------------------------------------------ masks

def test_davis_palette() -> None:
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    assert id_color(0) == (0, 0, 0)
    assert [id_color(i) for i in (1, 2, 3, 4)] == [(128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128)]
    assert len({tuple(c) for c in DAVIS_PALETTE.tolist()}) == 256


def test_mask_png_round_trip(tmp_path: Path) -> None:
    ids = np.random.default_rng(1).integers(0, 256, (37, 53), dtype=np.uint8)
    save_id_mask(tmp_path / "m.png", ids)
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "P"
        assert np.array_equal(np.frombuffer(bytes(im.getpalette()), np.uint8).reshape(-1, 3)[:256], DAVIS_PALETTE)
    assert np.array_equal(load_id_mask(tmp_path / "m.png"), ids)
    assert no_temps(tmp_path)
    save_id_mask(tmp_path / "b.png", ids > 100)  # bool masks are ids 0/1
    assert np.array_equal(load_id_mask(tmp_path / "b.png"), (ids > 100).astype(np.uint8))


def test_load_binary_and_colour_masks(tmp_path: Path) -> None:
    davis = load_id_mask(davis_annotations("blackswan") / "00000.png")  # 8-bit 0/255 grayscale
    assert davis.dtype == np.uint8 and set(np.unique(davis)) == {0, 1}
    assert np.array_equal(davis, np.asarray(Image.open(davis_annotations("blackswan") / "00000.png")) == 255)
    ids = np.zeros((20, 30), np.uint8)
    ids[2:8, 3:9], ids[10:15, 10:25] = 3, 200
    Image.fromarray(DAVIS_PALETTE[ids]).save(tmp_path / "rgb.png")
    assert np.array_equal(load_id_mask(tmp_path / "rgb.png"), ids)
    Image.fromarray(ids > 0).save(tmp_path / "onebit.png")
    assert np.array_equal(load_id_mask(tmp_path / "onebit.png"), (ids > 0).astype(np.uint8))
    odd = DAVIS_PALETTE[ids].copy()
    odd[0, 0] = (1, 2, 3)
    Image.fromarray(odd).save(tmp_path / "odd.png")
    with pytest.raises(InputError, match="odd.png.*palette"):
        load_id_mask(tmp_path / "odd.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.png"):
        load_id_mask(tmp_path / "junk.png")
    with pytest.raises(InputError, match="ids must be 0..255"):
        save_id_mask(tmp_path / "x.png", np.full((2, 2), 300))


# ---------------------------------------------------------------------------------- overlay

def test_overlay_blend_and_contours() -> None:
    frame = np.asarray(Image.open(davis_frames("blackswan") / "00000.jpg").convert("RGB"))
    ids = gt("blackswan", 0) * 5
    plain = render_overlay(frame, ids, alpha=0.5, contours=False)
    bg, fg = ids == 0, ids == 5
    assert np.array_equal(plain[bg], frame[bg])
    expected = (frame[fg].astype(int) * 128 + np.array(id_color(5)) * 128) >> 8
    assert np.array_equal(plain[fg], expected)
    outlined = render_overlay(frame, ids)
    edge = boundary_mask(ids)
    assert edge.sum() > 100 and np.all(outlined[edge] == 0)
    assert np.array_equal(outlined[~edge], plain[~edge])
    assert np.array_equal(render_overlay(frame, ids, alpha=0.0, contours=False), frame)
    with pytest.raises(InputError, match="does not match"):
        render_overlay(frame, ids[:, :100])


def test_boundary_mask_marks_both_sides_of_every_edge() -> None:
    ids = np.zeros((6, 8), np.uint8)
    ids[1:5, 1:4], ids[1:5, 4:7] = 1, 2
    edge = boundary_mask(ids)
    assert edge[2, 0] and edge[2, 1] and edge[2, 3] and edge[2, 4]  # background|1 and 1|2 edges
    assert not edge[2, 2] and not edge[2, 5] and not edge[5, 0]


def test_overlay_text_is_drawn_only_when_asked() -> None:
    frame = np.full((120, 160, 3), 90, np.uint8)
    ids = np.zeros((120, 160), np.uint8)
    ids[30:90, 40:120] = 1
    plain = render_overlay(frame, ids)
    texted = render_overlay(frame, ids, labels={1: "swan"}, show_ids=True)
    changed = np.any(texted != plain, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 20
    assert 40 <= xs.mean() <= 120 and 30 <= ys.mean() <= 90  # text sits on the object


# ---------------------------------------------------------------------------------- writers

def test_mp4_writer_pads_odd_sizes_and_leaves_nothing_on_abort(tmp_path: Path) -> None:
    frames = [np.full((17, 33, 3), v, np.uint8) for v in (0, 80, 160, 240)]
    with Mp4Writer(tmp_path / "odd.mp4", 25, 33, 17) as w:
        for f in frames:
            w.write(f)
    with av.open(str(tmp_path / "odd.mp4")) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert c.streams.video[0].average_rate == 25
    assert len(decoded) == 4 and decoded[0].shape == (18, 34, 3)
    assert [float(d[:17, :33].mean()) for d in decoded] == pytest.approx([0, 80, 160, 240], abs=3)
    with pytest.raises(RuntimeError), Mp4Writer(tmp_path / "aborted.mp4", 25, 33, 17) as w:
        w.write(frames[0])
        raise RuntimeError("interrupted")
    assert not (tmp_path / "aborted.mp4").exists() and no_temps(tmp_path)


def test_gif_writer_subsamples_and_downscales(tmp_path: Path) -> None:
    frame = np.asarray(Image.open(davis_frames("blackswan") / "00000.jpg").convert("RGB"))
    with GifWriter(tmp_path / "a.gif", 30, 854, 480) as w:
        for _ in range(9):
            w.write(frame)
    with Image.open(tmp_path / "a.gif") as im:
        assert im.size == (480, 270) and im.n_frames == 3  # 30 fps -> every 3rd frame, 10 fps
        small = np.asarray(Image.fromarray(frame).resize((480, 270), Image.Resampling.BILINEAR), float)
        assert np.abs(np.asarray(im.convert("RGB"), float) - small).mean() < 8


# ------------------------------------------------------------------------------- run writer

@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside pycocotools
def test_run_directory_outputs(tmp_path: Path) -> None:
    n = 6
    source = subset(tmp_path, n=n)
    masks = multi_object_masks(n)
    out = tmp_path / "run"
    with RunWriter(out, source) as run:
        for i, ids in enumerate(masks):
            run.write_mask(i, ids)
        assert run.done_frames() == list(range(n))
        result = run.finalize(objects={1: "swan", 2: {"label": "tail", "prompt": {"click": np.array([1, 2])}}},
                              settings={"sam_gap": np.int64(5)}, models={"tracker": "r50-deaotl"},
                              timings={"track_s": 1.5}, progress=False)
    assert sorted(result) == sorted(["overlay.mp4", "overlay.gif", "masks.zip", "masks_rle.json",
                                     "objects.json", "run.json"])
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:05d}.png" for i in range(n)]
    assert no_temps(out)

    with av.open(str(out / "overlay.mp4")) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        assert stream.average_rate == 30 and stream.codec_context.name == "h264"
        assert (len(frames), frames[0].width, frames[0].height) == (n, 854, 480)
        assert frames[0].format.name == "yuv420p" and not c.streams.audio
    with Image.open(out / "overlay.gif") as im:
        assert im.n_frames == 2 and im.size == (480, 270)
    with zipfile.ZipFile(out / "masks.zip") as z:
        assert sorted(z.namelist()) == [f"{i:05d}.png" for i in range(n)]
        assert z.read("00003.png") == (out / "masks" / "00003.png").read_bytes()

    rle = json.loads((out / "masks_rle.json").read_text())
    assert (rle["width"], rle["height"], rle["frames"]) == (854, 480, source.names)
    by_id = {o["id"]: o for o in rle["objects"]}
    assert sorted(by_id) == [1, 2, 7] and by_id[1]["label"] == "swan" and by_id[7]["label"] is None
    assert [f["frame"] for f in by_id[7]["frames"]] == [2, 3]
    for i, ids in enumerate(masks):  # rebuild every id mask from the RLE: must equal the mask
        rebuilt = np.zeros_like(ids)
        for obj in rle["objects"]:
            for rec in obj["frames"]:
                if rec["frame"] == i:
                    m = mask_utils.decode({"size": rec["segmentation"]["size"],
                                           "counts": rec["segmentation"]["counts"].encode()}).astype(bool)
                    assert rec["area"] == m.sum()
                    ys, xs = np.nonzero(m)
                    assert rec["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                    rebuilt[m] = obj["id"]
        assert np.array_equal(rebuilt, ids), i

    objects = json.loads((out / "objects.json").read_text())
    assert objects["1"]["label"] == "swan" and objects["2"]["prompt"] == {"click": [1, 2]}
    assert (objects["7"]["first_frame"], objects["7"]["last_frame"], objects["7"]["num_frames"]) == (2, 3, 2)
    assert (objects["1"]["first_name"], objects["1"]["last_name"]) == ("00000", "00005")

    record = json.loads((out / "run.json").read_text())
    assert record["settings"] == {"sam_gap": 5} and record["models"] == {"tracker": "r50-deaotl"}
    assert record["timings"]["track_s"] == 1.5 and record["timings"]["finalize_s"] > 0
    assert {"samtrack", "numpy", "av", "pillow", "pycocotools"} <= set(record["versions"])
    assert record["source"]["frames"] == n and record["source"]["fps"] == 30.0


def test_background_writes_from_another_thread_and_resume(tmp_path: Path) -> None:
    n = 6
    source = subset(tmp_path, n=n)
    out = tmp_path / "run"
    run = RunWriter(out, source, background=True, max_pending=2)
    worker = threading.Thread(target=lambda: [run.write_mask(i, gt("blackswan", i)) for i in range(4)])
    worker.start()
    worker.join()
    run.close()
    # An interrupted run: a half-written mask under its final name and a stale temporary file.
    (out / "masks" / "00004.png").write_bytes((out / "masks" / "00000.png").read_bytes()[:300])
    (out / "masks" / ".00005.png.123-4-abcd.tmp").write_bytes(b"partial")
    resumed = RunWriter(out, source)
    assert no_temps(out)
    assert resumed.done_frames() == [0, 1, 2, 3]
    assert np.array_equal(resumed.read_mask(2), gt("blackswan", 2))
    with pytest.raises(InputError, match="00005"):
        resumed.finalize(progress=False)
    for i in (4, 5):
        resumed.write_mask(i, gt("blackswan", i))
    assert resumed.done_frames() == list(range(n))
    resumed.finalize(gif=False, progress=False)
    with av.open(str(out / "overlay.mp4")) as c:
        assert len(list(c.decode(video=0))) == n


def test_write_mask_checks_its_input(tmp_path: Path) -> None:
    run = RunWriter(tmp_path / "run", subset(tmp_path, n=2))
    with pytest.raises(InputError, match="854x480"):
        run.write_mask(0, np.zeros((10, 10), np.uint8))
    with pytest.raises(IndexError):
        run.write_mask(2, gt("blackswan", 0))


def test_interrupted_finalize_keeps_masks_and_publishes_nothing(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    n = 5
    source = subset(tmp_path, n=n)
    out = tmp_path / "run"
    run = RunWriter(out, source)
    for i in range(n):
        run.write_mask(i, gt("blackswan", i))
    real = outputs_module.render_overlay
    calls = []

    def interrupted(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs_module, "render_overlay", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run.finalize(progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["masks"] and no_temps(out)
    assert run.done_frames() == list(range(n))


SMALL = (256, 144)


def make_video_with_audio(path: Path, n: int, codec: str) -> Path:
    """n small blackswan frames at 30 fps with a 440 Hz mono sine soundtrack in `codec`."""
    rate = 44100
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=30)
        (video.width, video.height), video.pix_fmt = SMALL, "yuv420p"
        audio = out.add_stream(codec, rate=rate)
        audio.layout = "mono"
        for i in range(n):
            image = Image.open(davis_frames("blackswan") / f"{i:05d}.jpg").resize(SMALL)
            vf = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            vf.pts = i
            out.mux(video.encode(vf))
        out.mux(video.encode())
        t = np.arange(int(rate * n / 30)) / rate
        signal = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        fmt = "fltp" if codec == "aac" else "s16"
        for start in range(0, len(signal), 1024):
            chunk = signal[start:start + 1024]
            data = chunk[None] if fmt == "fltp" else (chunk * 32767).astype(np.int16)[None]
            af = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
            af.sample_rate, af.pts = rate, start
            out.mux(audio.encode(af))
        out.mux(audio.encode())
    return path


@pytest.mark.parametrize(("suffix", "codec"), [("mp4", "aac"), ("mov", "pcm_s16le")])
def test_overlay_video_keeps_the_input_audio(tmp_path: Path, suffix: str, codec: str) -> None:
    n = 12
    source = open_source(make_video_with_audio(tmp_path / f"in.{suffix}", n, codec))
    assert source.has_audio and len(source) == n
    run = RunWriter(tmp_path / "run", source)
    for i in range(n):
        ids = np.zeros(SMALL[::-1], np.uint8)
        ids[40:100, 30 + i:120 + i] = 1
        run.write_mask(i, ids)
    run.finalize(gif=False, progress=False)
    with av.open(str(tmp_path / "run" / "overlay.mp4")) as c:
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == "aac"
        assert len(list(c.decode(video=0))) == n
    with av.open(str(tmp_path / "run" / "overlay.mp4")) as c:
        stream = c.streams.audio[0]
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(stream)])
        sample_rate = stream.codec_context.sample_rate
    duration = len(sound) / sample_rate
    assert n / 30 - 0.05 <= duration <= n / 30 + 0.1  # the video's length, not more
    spectrum = np.abs(np.fft.rfft(sound))
    assert np.fft.rfftfreq(len(sound), 1 / sample_rate)[spectrum.argmax()] == pytest.approx(440, abs=15)


def test_finalize_writes_only_the_frames_the_run_covers(tmp_path: Path) -> None:
    n = 6
    source = subset(tmp_path, n=n)
    out = tmp_path / "run"
    masks = multi_object_masks(n)
    with RunWriter(out, source) as run:
        for i in (1, 2, 3):
            run.write_mask(i, masks[i])
        run.finalize(frames=[1, 2, 3], progress=False)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00001.png", "00002.png", "00003.png"]
    with zipfile.ZipFile(out / "masks.zip") as z:
        assert sorted(z.namelist()) == ["00001.png", "00002.png", "00003.png"]
    with av.open(str(out / "overlay.mp4")) as c:
        assert len(list(c.decode(video=0))) == 3
    rle = json.loads((out / "masks_rle.json").read_text())
    assert rle["covered"] == [[1, 3]]
    assert {f["frame"] for o in rle["objects"] for f in o["frames"]} == {1, 2, 3}
    record = json.loads((out / "run.json").read_text())
    assert record["frames"] == {"covered": [[1, 3]], "count": 3, "first": "00001", "last": "00003"}
    objects = json.loads((out / "objects.json").read_text())
    assert (objects["1"]["first_frame"], objects["1"]["last_frame"]) == (1, 3)


def test_a_full_disk_while_finalising_names_the_file_and_keeps_the_masks(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from samtrack.errors import OutputError

    n = 4
    source = subset(tmp_path, n=n)
    out = tmp_path / "run"
    run = RunWriter(out, source)
    for i in range(n):
        run.write_mask(i, gt("blackswan", i))
    real = Mp4Writer.write

    def full(self, frame):
        real(self, frame)
        raise OSError(errno.ENOSPC, "No space left on device", str(self._tmp))

    monkeypatch.setattr(Mp4Writer, "write", full)
    with pytest.raises(OutputError, match=f"cannot write {out / 'overlay.mp4'}: the disk is full"):
        run.finalize(progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["masks"] and no_temps(out)
    assert run.done_frames() == list(range(n))


def test_after_a_failed_background_write_no_later_mask_is_written(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from samtrack.errors import OutputError

    n = 6
    source = subset(tmp_path, n=n)
    run = RunWriter(tmp_path / "run", source, background=True, max_pending=8)
    real = outputs_module.save_id_mask
    space = {"left": 2}
    started = threading.Event()

    def save(path, ids):
        started.wait(5)  # every mask is queued before the first is written
        if space["left"] == 0:
            space["left"] = 10  # space freed: the masks queued behind the failed one must still not appear
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        space["left"] -= 1
        real(path, ids)

    monkeypatch.setattr(outputs_module, "save_id_mask", save)
    for i in range(n - 1):
        run.write_mask(i, gt("blackswan", i))
    started.set()
    with pytest.raises(OutputError, match="00002.png: the disk is full"):
        run.flush()
    assert run.done_frames() == [0, 1]  # no gap: 3 and 4 were dropped
    run.write_mask(5, gt("blackswan", 5))  # reported: the writer works again
    run.close()
    assert run.done_frames() == [0, 1, 5]
