"""Load official AOT/DeAOT release checkpoints (``.pth``) into :class:`AOTNetwork`.

Accepted layouts, as the official ``load_network`` reads them: ``{'state_dict': sd, ...}``,
``{'model': sd, ...}`` or the bare state dict; other top-level entries (optimizer, scaler...)
are ignored and a leading ``module.`` (DataParallel) is stripped. Tensors may be fp16 or fp32;
they are copied into the float32 model. Unlike the official loader, a checkpoint that does not
cover the model exactly is rejected, with a guess at which variant it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from samtrack.errors import ModelError
from samtrack.models.deaot.config import VARIANTS, VariantConfig
from samtrack.models.deaot.network import AOTNetwork
from samtrack.models.weights import load_checkpoint_file

_ENCODER_SIGNATURES = (("encoder.features.", "mobilenetv2"), ("encoder.layer1.", "resnet50"),
                       ("encoder.patch_embed.", "swin_base"))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``weights_only`` loading), unwrapped from its container."""
    path = Path(path)
    obj = load_checkpoint_file(path, "tracker")
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ModelError(f"{path} holds no model weights (expected a state dict of tensors, "
                         f"optionally under 'state_dict' or 'model')")
    return dict(obj)


def guess_variants(keys: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the released variants whose architecture a state dict's keys describe."""
    encoder = next((name for prefix, name in _ENCODER_SIGNATURES if any(k.startswith(prefix) for k in keys)), None)
    model = "deaot" if "id_norm.weight" in keys else "aot"
    layers = {int(m.group(1)) for k in keys if (m := re.match(r"LSTT\.layers\.(\d+)\.", k))}
    return [v.name for v in VARIANTS.values()
            if v.encoder == encoder and v.model == model and v.num_layers == len(layers)]


def load_checkpoint(network: AOTNetwork, path: str | Path) -> None:
    """Copy a checkpoint's weights into ``network``; any mismatch is a :class:`ModelError`."""
    cfg: VariantConfig = network.cfg
    state = read_state_dict(path)
    expected = network.state_dict()
    state = {(k[7:] if k.startswith("module.") and k[7:] in expected else k): v for k, v in state.items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        guesses = guess_variants(state)
        found = (f"it looks like {' or '.join(guesses)}" if guesses else "it matches no released AOT/DeAOT model")
        details = "; ".join(f"{len(keys)} {what} (e.g. {keys[0]})" for what, keys in
                            (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", wrong_shape)) if keys)
        raise ModelError(f"{path} is not a {cfg.name} checkpoint: {found} ({details}); "
                         f"pass the checkpoint of {cfg.name} or choose the model that matches the file")
    floats = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    network.load_state_dict(floats, strict=True)
