"""Load original Segment Anything checkpoints (``sam_vit_b_01ec64.pth`` style) into transformers' SamModel.

The official release files hold a bare state dict in the layout of ``segment_anything.modeling.Sam``.
The architecture hyper-parameters are not stored, so they are read off the tensor shapes; the key
names are then mapped onto transformers' layout.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import SamConfig, SamModel

from samtrack.errors import ModelError
from samtrack.models.weights import load_checkpoint_file

# Plain renames, applied in order to every key (regex, replacement).
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^image_encoder\.", "vision_encoder."),
    (r"^vision_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
    (r"^vision_encoder\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.layers.\1.layer_norm\2."),
    (r"^vision_encoder\.blocks\.", "vision_encoder.layers."),
    (r"^vision_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
    (r"^vision_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
    (r"^vision_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
    (r"^vision_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
    (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^mask_decoder\.transformer\.layers\.(\d+)\.norm(\d)\.", r"mask_decoder.transformer.layers.\1.layer_norm\2."),
    (r"^mask_decoder\.transformer\.norm_final_attn\.", "mask_decoder.transformer.layer_norm_final_attn."),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
)
_POSITIONAL = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_MLP = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d+)\.(.*)$")


def load_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official SAM ``.pth`` file safely (tensors only) and return its state dict."""
    checkpoint = load_checkpoint_file(path, "SAM")
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict) or "image_encoder.patch_embed.proj.weight" not in checkpoint:
        raise ModelError(
            f"{path} is not an original Segment Anything checkpoint (no image_encoder weights). "
            "Pass a sam_vit_{b,l,h}_*.pth file or a transformers SAM directory."
        )
    return checkpoint


def _mlp_depth(state: dict[str, torch.Tensor], prefix: str) -> int:
    return 1 + max(int(m.group(2)) for k in state if (m := _MLP.match(k)) and m.group(1) == prefix)


def config_from_official(state: dict[str, torch.Tensor]) -> SamConfig:
    """Infer the SamConfig of an official checkpoint from its tensor shapes."""
    hidden = state["image_encoder.patch_embed.proj.weight"].shape[0]
    patch = state["image_encoder.patch_embed.proj.weight"].shape[-1]
    grid = state["image_encoder.pos_embed"].shape[1]
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("image_encoder.blocks."))
    rel_pos = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"] for i in range(depth)]
    head_dim = rel_pos[0].shape[1]
    global_layers = [i for i, r in enumerate(rel_pos) if r.shape[0] == 2 * grid - 1]
    window = next(((r.shape[0] + 1) // 2 for r in rel_pos if r.shape[0] != 2 * grid - 1), 0)
    prompt_dim = state["image_encoder.neck.0.weight"].shape[0]
    mask_channels = state["prompt_encoder.mask_downscaling.3.weight"].shape[0]
    decoder_depth = 1 + max(
        int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.transformer.layers.")
    )
    iou_head_depth = _mlp_depth(state, "mask_decoder.iou_prediction_head")
    return SamConfig(
        vision_config={
            "hidden_size": hidden,
            "num_hidden_layers": depth,
            "num_attention_heads": hidden // head_dim,
            "patch_size": patch,
            "image_size": grid * patch,
            "output_channels": prompt_dim,
            "global_attn_indexes": global_layers,
            "window_size": window,
            "mlp_dim": state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0],
            "num_pos_feats": prompt_dim // 2,
        },
        prompt_encoder_config={
            "hidden_size": prompt_dim,
            "image_size": grid * patch,
            "patch_size": patch,
            "mask_input_channels": mask_channels,
        },
        mask_decoder_config={
            "hidden_size": prompt_dim,
            "num_hidden_layers": decoder_depth,
            "mlp_dim": state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            "num_multimask_outputs": state["mask_decoder.mask_tokens.weight"].shape[0] - 1,
            "iou_head_depth": iou_head_depth,
            "iou_head_hidden_dim": state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
            # The official two-way transformer uses torch's default LayerNorm eps (transformers' default is 1e-6).
            "layer_norm_eps": 1e-5,
        },
    )


def _rename(key: str, mlp_depths: dict[str, int]) -> str:
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    match = _MLP.match(key)
    if match:
        # Official MLPs keep all layers in one list; transformers splits out the first and last.
        prefix, index, rest = match.group(1), int(match.group(2)), match.group(3)
        if index == 0:
            return f"{prefix}.proj_in.{rest}"
        if index == mlp_depths[prefix] - 1:
            return f"{prefix}.proj_out.{rest}"
        return f"{prefix}.layers.{index - 1}.{rest}"
    return key


def convert_official_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map official segment-anything keys onto transformers' SamModel keys."""
    prefixes = {m.group(1) for k in state if (m := _MLP.match(k))}
    depths = {p: _mlp_depth(state, p) for p in prefixes}
    converted = {}
    for key, value in state.items():
        if key == _POSITIONAL:
            # One random Fourier matrix serves both the prompt points and the image-wide positions.
            converted["shared_image_embedding.positional_embedding"] = value
            converted["prompt_encoder.shared_embedding.positional_embedding"] = value
        elif key not in ("pixel_mean", "pixel_std"):
            converted[_rename(key, depths)] = value
    return converted


def sam_from_official_checkpoint(path: str | Path) -> SamModel:
    """Build a transformers SamModel holding the weights of an official ``.pth`` checkpoint."""
    state = load_official_state_dict(path)
    if any(k.startswith("mask_decoder.hf_token") for k in state):
        raise ModelError(
            f"{path} is a SAM-HQ checkpoint; original-format SAM-HQ files are not converted. "
            "Use the transformers SAM-HQ model ('sam-hq-vit-b', ...) or a converted directory."
        )
    model = SamModel(config_from_official(state))
    missing, unexpected = model.load_state_dict(convert_official_state_dict(state), strict=False)
    if missing or unexpected:
        raise ModelError(
            f"{path} does not match the SAM architecture (missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}). Pass an original segment-anything checkpoint."
        )
    return model.eval()
