"""Frame sources on the real DAVIS-2016 data and on small videos written here with PyAV."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import DAVIS, davis_annotations, davis_frames
from PIL import Image

from samtrack.errors import InputError
from samtrack.io.sources import ImageFolderSource, VideoSource, open_source

SEQUENCES = sorted(p.name for p in (DAVIS / "JPEGImages" / "480p").iterdir()) if DAVIS.is_dir() else []


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def write_video(path: Path, frames: list[np.ndarray], codec: str = "libx264", pix_fmt: str = "yuv420p",
                fps: int = 30, rotation: float | None = None, gop: int | None = None) -> Path:
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if gop:
            stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            out.mux(stream.encode(vf))
        out.mux(stream.encode())
    return path


def test_davis2016_has_twenty_sequences(davis_root: Path) -> None:
    assert len(SEQUENCES) == 20


@pytest.mark.parametrize("seq", SEQUENCES)
def test_every_davis_sequence_reads(seq: str) -> None:
    folder = davis_frames(seq)
    src = open_source(folder)
    expected = sorted(p.stem for p in folder.glob("*.jpg"))
    assert isinstance(src, ImageFolderSource)
    assert len(src) == len(expected) > 0
    assert src.names == expected
    assert (src.width, src.height, src.fps) == (854, 480, 30.0)
    assert src.annotations.resolve() == davis_annotations(seq).resolve()
    assert sorted(p.stem for p in davis_annotations(seq).glob("*.png")) == src.names
    for i in (0, len(src) - 1):
        frame = src[i]
        assert frame.shape == (480, 854, 3) and frame.dtype == np.uint8
        assert np.array_equal(frame, np.asarray(Image.open(folder / f"{src.names[i]}.jpg").convert("RGB")))


def test_davis_root_needs_a_sequence(davis_root: Path) -> None:
    src = open_source(davis_root, sequence="blackswan")
    assert src.path == davis_frames("blackswan") and len(src) == 50
    with pytest.raises(InputError, match="blackswan"):
        open_source(davis_root)
    with pytest.raises(InputError, match="not-a-sequence"):
        open_source(davis_root, sequence="not-a-sequence")


def test_blackswan_mp4_matches_the_jpeg_frames(blackswan_mp4: Path) -> None:
    video = open_source(blackswan_mp4)
    jpegs = open_source(davis_frames("blackswan"))
    assert isinstance(video, VideoSource)
    assert (len(video), video.width, video.height, video.fps, video.has_audio) == (50, 854, 480, 30.0, False)
    assert video.names[:2] == ["00000", "00001"] and video.names[-1] == "00049"
    count = 0
    for i, frame in enumerate(video):
        assert frame.shape == (480, 854, 3)
        # H.264 at default quality against the JPEGs it was made from: ~33 dB here.
        assert psnr(frame, jpegs[i]) > 28, i
        count += 1
    assert count == 50


def test_video_random_access_equals_sequential_decode(blackswan_mp4: Path) -> None:
    video = open_source(blackswan_mp4)
    frames = list(video)
    for i in [37, 2, 49, 0, 20, 21, 22, 5, -1]:
        assert np.array_equal(video[i], frames[i]), i
    with pytest.raises(IndexError):
        video[50]


@pytest.mark.parametrize(("suffix", "codec", "pix_fmt"), [
    ("mkv", "libx264", "yuv420p"), ("webm", "libvpx-vp9", "yuv420p"), ("avi", "mpeg4", "yuv420p"),
    ("mov", "libx264", "yuv420p"), ("mp4", "libx264", "yuv420p"),
])
def test_containers_random_access(tmp_path: Path, suffix: str, codec: str, pix_fmt: str) -> None:
    frames = [np.asarray(Image.open(davis_frames("dog") / f"{i:05d}.jpg").convert("RGB").resize((160, 96)))
              for i in range(14)]
    path = write_video(tmp_path / f"clip.{suffix}", frames, codec=codec, pix_fmt=pix_fmt, gop=5)
    src = open_source(path)
    assert (len(src), src.width, src.height) == (14, 160, 96)
    decoded = list(src)
    assert len(decoded) == 14
    for i in [13, 3, 9, 0, 7, 8, 12, 1]:  # backwards jumps force seeks to earlier key frames
        assert np.array_equal(src[i], decoded[i]), i
    assert all(psnr(d, f) > 24 for d, f in zip(decoded, frames))


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    img = np.zeros((32, 64, 3), np.uint8)
    img[:8, :16] = 255  # white block top-left: marks the orientation
    path = write_video(tmp_path / "rotated.mp4", [img] * 3, rotation=90)
    src = open_source(path)
    assert (src.width, src.height) == (32, 64)
    assert np.abs(src[1].astype(int) - np.rot90(img, 1)).mean() < 4
    assert np.abs(next(iter(src)).astype(int) - np.rot90(img, 1)).mean() < 4


def test_odd_sized_video(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (17, 33, 3), dtype=np.uint8) for _ in range(4)]
    src = open_source(write_video(tmp_path / "odd.mkv", frames, pix_fmt="yuv444p"))
    assert (src.width, src.height, len(src)) == (33, 17, 4)
    assert src[3].shape == (17, 33, 3)


def test_image_folder_natural_order_names_and_fps(tmp_path: Path) -> None:
    for name, value in [("frame10.png", 10), ("frame2.jpg", 2), ("frame1.png", 1), ("notes.txt", 0)]:
        if name.endswith(".txt"):
            (tmp_path / name).write_text("not a frame")
            continue
        Image.fromarray(np.full((9, 7, 3), value, np.uint8)).save(tmp_path / name)
    src = open_source(tmp_path)
    assert src.names == ["frame1", "frame2", "frame10"]
    assert (src.width, src.height, src.fps, src.has_audio) == (7, 9, 30.0, False)
    assert [int(f[0, 0, 0]) for f in src] == [1, 2, 10]
    assert open_source(tmp_path, fps=12.5).fps == 12.5


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    img.save(tmp_path / "a.jpg", exif=exif)
    src = open_source(tmp_path)
    assert (src.width, src.height) == (10, 20)
    assert src[0].shape == (20, 10, 3)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    shutil.copy(davis_frames("blackswan") / "00000.jpg", tmp_path / "00000.jpg")
    (tmp_path / "00001.jpg").write_bytes(b"this is not a jpeg")
    src = open_source(tmp_path)
    with pytest.raises(InputError, match="00001.jpg"):
        src[1]
    with pytest.raises(InputError, match="00001.jpg"):
        list(src)
    (tmp_path / "00000.jpg").write_bytes((davis_frames("blackswan") / "00000.jpg").read_bytes()[:2000])
    with pytest.raises(InputError, match="00000.jpg"):
        open_source(tmp_path)[0]


def test_frames_of_different_sizes_are_refused(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "0.png")
    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(tmp_path / "1.png")
    with pytest.raises(InputError, match="1.png"):
        open_source(tmp_path)[1]


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_video_names_the_file(tmp_path: Path, blackswan_mp4: Path, keep: float) -> None:
    data = blackswan_mp4.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="cut.mp4"):
        list(open_source(path))


def test_truncated_faststart_video_names_the_file(tmp_path: Path, blackswan_mp4: Path) -> None:
    # Index first: the header survives truncation, the frames do not.
    full = tmp_path / "faststart.mp4"
    with av.open(str(blackswan_mp4)) as inp, av.open(str(full), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0], opaque=True)
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    assert len(open_source(full)) == 50
    cut = tmp_path / "faststart_cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError, match="faststart_cut.mp4.*truncated"):
        open_source(cut)


def test_bad_paths_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "fake.mp4").write_text("hello")
    with pytest.raises(InputError, match="fake.mp4"):
        open_source(tmp_path / "fake.mp4")
    with pytest.raises(InputError, match="single image"):
        open_source(davis_frames("blackswan") / "00000.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .jpg"):
        open_source(tmp_path / "empty")
