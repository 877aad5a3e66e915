"""Every Pillow mode a frame image can have decodes to the right RGB, or is refused with a clear error."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samtrack.errors import InputError
from samtrack.io.sources import image_to_rgb, open_source

RNG = np.random.default_rng(7)
H, W = 6, 5


def gray3(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2).astype(np.uint8)


def png16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit PNG written byte by byte (Pillow cannot save 16-bit colour): gray, gray+alpha, RGB, RGBA."""
    h, w = values.shape[:2]
    channels = 1 if values.ndim == 2 else values.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def read_back(folder: Path, name: str) -> np.ndarray:
    src = open_source(folder)
    assert src.names == [Path(name).stem]
    return src[0]


def test_sixteen_bit_gray_png_is_not_white(tmp_path: Path) -> None:
    values = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    values[0, 0], values[0, 1] = 0, 65535
    png16(tmp_path / "f.png", values)
    assert Image.open(tmp_path / "f.png").mode == "I;16"
    rgb = read_back(tmp_path, "f.png")
    assert np.array_equal(rgb, gray3(values >> 8))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_sixteen_bit_colour_pngs_keep_their_high_byte(tmp_path: Path, channels: int) -> None:
    values = RNG.integers(0, 65536, (H, W, channels), dtype=np.uint16)
    png16(tmp_path / "f.png", values)
    rgb = read_back(tmp_path, "f.png")
    expected = gray3(values[..., 0] >> 8) if channels == 2 else (values[..., :3] >> 8).astype(np.uint8)
    assert np.array_equal(rgb, expected)


def test_eight_bit_file_modes(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    gray = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    bits = RNG.random((H, W)) > 0.5
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    index = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    p_image = Image.fromarray(index, "L")
    p_image.putpalette(palette.tobytes())
    cases = {
        "one.png": (Image.fromarray(bits), gray3(bits * 255)),
        "l.png": (Image.fromarray(gray, "L"), gray3(gray)),
        "la.png": (Image.fromarray(np.dstack([gray, 255 - gray]), "LA"), gray3(gray)),
        "p.png": (p_image, palette[index]),
        "rgba.png": (Image.fromarray(np.dstack([rgb, gray]), "RGBA"), rgb),
    }
    for name, (image, expected) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        image.save(folder / name)
        assert np.array_equal(read_back(folder, name), expected), name


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[..., 0] = 255  # full cyan: no red
    cmyk[8:, ..., 3] = 128  # half black below
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=100)
    rgb = read_back(tmp_path, "c.jpg").astype(int)
    assert (np.abs(rgb[:8] - [0, 255, 255]) <= 3).all()
    assert (np.abs(rgb[8:] - [0, 127, 127]) <= 3).all()


def test_in_memory_modes_decode_to_the_right_rgb() -> None:
    rgb = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    base = Image.fromarray(rgb, "RGB")
    wide = RNG.integers(0, 65536, (H, W)).astype(np.int32)
    assert np.array_equal(image_to_rgb(Image.fromarray(wide, "I"), "f"), gray3(wide >> 8))
    pa = Image.fromarray(np.dstack([RNG.integers(0, 256, (H, W), dtype=np.uint8)] * 2), "LA")
    pa = pa.convert("PA")
    assert np.array_equal(image_to_rgb(pa, "f"), np.asarray(pa.convert("RGB")))
    for mode in ("YCbCr", "HSV"):
        back = image_to_rgb(base.convert(mode), "f").astype(int)
        assert np.abs(back - rgb).max() <= 6, mode  # 8-bit round trip through another colour space


@pytest.mark.parametrize("image, why", [
    (Image.fromarray(np.full((H, W), 0.5, np.float32), "F"), "floating-point"),
    (Image.fromarray(np.full((H, W), 70_000, np.int32), "I"), "beyond 16 bits"),
    (Image.fromarray(np.full((H, W), -3, np.int32), "I"), "beyond 16 bits"),
    (Image.new("LAB", (W, H)), "LAB"),
])
def test_modes_without_a_defined_rgb_are_refused(image: Image.Image, why: str) -> None:
    with pytest.raises(InputError, match=f"frame.png.*{why}.*8-bit"):
        image_to_rgb(image, "frame.png")
