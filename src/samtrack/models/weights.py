"""Checkpoint files (`.pth`): a quick look before any model is built, and a safe load.

A checkpoint is untrusted input: it is only ever loaded with ``weights_only=True``, so a file that
pickles code or other Python objects is refused, never run. The messages name the file and say what
to do, without the loader's internals.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from samtrack.errors import ModelError

# torch.save writes a zip archive holding <name>/data.pkl; files from before PyTorch 1.6 are a pickle
# stream, which starts with the PROTO opcode.
_PICKLE_PROTO = 0x80


def _not_a_checkpoint(path: Path, what: str) -> ModelError:
    return ModelError(f"{path} is not a PyTorch {what} checkpoint (a .pth file saved by torch.save), or it "
                      "is truncated or corrupt; download it again or give the right file")


def check_checkpoint_file(path: str | Path, what: str = "model") -> None:
    """Refuse at once a file that cannot be a checkpoint (reads only its header and zip index)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(1)
    except FileNotFoundError:
        raise ModelError(f"{what} checkpoint {path} does not exist; check the path") from None
    except OSError as exc:
        raise ModelError(f"cannot read the {what} checkpoint {path} ({exc.strerror})") from None
    if head and head[0] == _PICKLE_PROTO:
        return
    try:
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("data.pkl") for name in archive.namelist()):
                return
    except (zipfile.BadZipFile, OSError, ValueError):
        pass
    raise _not_a_checkpoint(path, what)


def load_checkpoint_file(path: str | Path, what: str = "model") -> Any:
    """The contents of a checkpoint file, loaded with ``weights_only=True``."""
    import torch  # here, so that checking a file (and the CLI's start) does not import torch

    path = Path(path)
    check_checkpoint_file(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # the file names a class or function to import and call
            raise ModelError(f"{path} holds pickled Python objects besides weights (code or classes), which "
                             "samtrack never loads: a checkpoint must hold tensors only; use the official "
                             f"release of the {what}") from None
        raise _not_a_checkpoint(path, what) from None
    except Exception:  # noqa: BLE001 - torch raises many types for truncated / foreign files
        raise _not_a_checkpoint(path, what) from None
