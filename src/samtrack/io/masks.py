"""Id masks on disk: DAVIS palette PNGs.

An id mask is a `uint8` H×W array: 0 is background, 1..255 are object ids. On disk it is a
palette ("P" mode) PNG whose pixel values are the ids and whose palette is `DAVIS_PALETTE`, the
colour map DAVIS and PASCAL VOC use (index 0 black, then dark red, green, olive, navy, ...), so
any image viewer shows each object in its own colour and DAVIS tools read the files unchanged.

    save_id_mask("masks/00000.png", ids)     # atomic: temporary name, then rename
    ids = load_id_mask("masks/00000.png")    # also reads 0/255 binary and colour PNGs
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from samtrack.errors import InputError
from samtrack.io.atomic import atomic_path

MAX_ID = 255
# zlib level 1 writes masks several times faster than the default 6 for a few % more bytes.
PNG_COMPRESS_LEVEL = 1


def _make_davis_palette() -> np.ndarray:
    """The 256-entry DAVIS / PASCAL VOC colour map as a 256×3 uint8 array.

    Colour i spreads the bits of i over the channels: bit 3k+c of the id sets bit 7-k of
    channel c, so small ids get saturated, well separated colours and all 256 are distinct.
    """
    ids = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for k in range(8):
        for c in range(3):
            palette[:, c] |= ((ids >> (3 * k + c)) & 1) << (7 - k)
    return palette.astype(np.uint8)


DAVIS_PALETTE: np.ndarray = _make_davis_palette()
DAVIS_PALETTE.setflags(write=False)
_PALETTE_BYTES = DAVIS_PALETTE.tobytes()


def id_color(obj_id: int) -> tuple[int, int, int]:
    """The RGB colour of object `obj_id` in the DAVIS palette."""
    r, g, b = DAVIS_PALETTE[obj_id]
    return int(r), int(g), int(b)


def as_id_mask(ids: np.ndarray) -> np.ndarray:
    """Validate an id mask and return it as a 2-D uint8 array (bool masks become 0/1)."""
    arr = np.asarray(ids)
    if arr.ndim != 2:
        raise InputError(f"an id mask must be 2-D (H×W), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"an id mask must hold integer ids, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > MAX_ID):
        raise InputError(f"object ids must be 0..{MAX_ID}, got {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)


def encode_id_mask(ids: np.ndarray) -> Image.Image:
    """The palette PIL image for an id mask."""
    im = Image.fromarray(as_id_mask(ids))
    im.putpalette(_PALETTE_BYTES)  # turns the "L" image into a "P" image, pixel values unchanged
    return im


def save_id_mask(path: str | os.PathLike[str], ids: np.ndarray) -> None:
    """Write `ids` (uint8 H×W, or bool) as a DAVIS palette PNG, atomically."""
    im = encode_id_mask(ids)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def _colors_to_ids(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Map RGB pixels to ids through the DAVIS palette (black/white-only images are binary)."""
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    present = np.unique(codes)
    if np.all(np.isin(present, (0, 0xFFFFFF))):
        return (codes != 0).astype(np.uint8)
    pal = DAVIS_PALETTE.astype(np.int32)
    pal_codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(pal_codes)
    sorted_codes = pal_codes[order]
    pos = np.clip(np.searchsorted(sorted_codes, present), 0, 255)
    unknown = present[sorted_codes[pos] != present]
    if unknown.size:
        c = int(unknown[0])
        raise InputError(f"{path} contains the colour ({c >> 16}, {(c >> 8) & 255}, {c & 255}), which is "
                         "not a DAVIS palette colour; save id masks as palette PNGs or 0/255 binary PNGs")
    lut_pos = np.searchsorted(present, codes)
    return order[pos][lut_pos].astype(np.uint8)


def load_id_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an id mask PNG as uint8 H×W.

    Accepted: palette PNGs (pixel values are the ids, whatever the palette), 8-bit grayscale
    (only 0 and 255 present: a binary mask, read as ids 0/1; otherwise values are ids), 1-bit
    images (ids 0/1), and RGB/RGBA images drawn in DAVIS palette colours (black/white: 0/1).

    Raises:
        InputError: the file is missing, unreadable, or its colours are not ids.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "L"):
                arr = np.array(im)  # a writable copy: callers edit masks in place
            elif mode == "1":
                arr = np.asarray(im).astype(np.uint8)
            elif mode in ("LA", "PA"):
                arr = np.array(im.getchannel(0))
            elif mode in ("RGB", "RGBA"):
                return _colors_to_ids(np.asarray(im.convert("RGB")), p)
            elif mode in ("I", "I;16", "I;16B"):
                arr = np.asarray(im.convert("I"))
                if arr.size and (arr.min() < 0 or arr.max() > MAX_ID):
                    raise InputError(f"{p} holds values {arr.min()}..{arr.max()}; ids must be 0..{MAX_ID}")
                arr = arr.astype(np.uint8)
            else:
                raise InputError(f"{p} is a {mode!r} image; id masks must be palette, grayscale or RGB PNGs")
    except FileNotFoundError as exc:
        raise InputError(f"mask file not found: {p}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read mask {p}: {exc}; replace or delete the file") from exc
    if mode in ("L", "LA"):
        counts = np.bincount(arr.ravel(), minlength=256)
        if counts[255] and counts[0] + counts[255] == arr.size:  # only 0 and 255: a binary mask
            return (arr == 255).astype(np.uint8)
    return np.ascontiguousarray(arr, dtype=np.uint8)
