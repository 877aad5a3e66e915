"""Full-size SAM 2.1 / EdgeTAM video configurations, to build the real architectures without weights
(speed and memory measurements: they do not depend on the weights' values)."""

from __future__ import annotations

from transformers import (
    EdgeTamVideoConfig,
    EdgeTamVisionConfig,
    Sam2HieraDetConfig,
    Sam2VideoConfig,
    Sam2VisionConfig,
    TimmWrapperConfig,
)

from samtrack.errors import InputError

# Hiera backbones of the SAM 2.1 releases (sam2.1_hiera_{t,s,b+,l}.yaml): blocks per stage, first stage
# width and heads, global-attention blocks, window sizes, background size of the window position embedding.
_HIERA = {
    "sam2.1-tiny": ([1, 2, 7, 2], 96, 1, [5, 7, 9], [8, 4, 14, 7], [7, 7]),
    "sam2.1-small": ([1, 2, 11, 2], 96, 1, [7, 10, 13], [8, 4, 14, 7], [7, 7]),
    "sam2.1-base-plus": ([2, 3, 16, 3], 112, 2, [12, 16, 20], [8, 4, 14, 7], [14, 14]),
    "sam2.1-large": ([2, 6, 36, 4], 144, 2, [23, 33, 43], [8, 4, 16, 8], [7, 7]),
}
FULL_SIZE_NAMES = (*_HIERA, "edgetam")


def full_size_config(name: str) -> Sam2VideoConfig | EdgeTamVideoConfig:
    """The configuration of a released model (``sam2.1-tiny|small|base-plus|large`` or ``edgetam``)."""
    if name == "edgetam":
        backbone = TimmWrapperConfig(architecture="repvit_m1",
                                     model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]})
        return EdgeTamVideoConfig(vision_config=EdgeTamVisionConfig(backbone_config=backbone))
    if name not in _HIERA:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(FULL_SIZE_NAMES)}")
    blocks, width, heads, global_blocks, windows, background = _HIERA[name]
    widths = [width * 2**i for i in range(4)]
    hiera = Sam2HieraDetConfig(hidden_size=width, num_attention_heads=heads, blocks_per_stage=blocks,
                               embed_dim_per_stage=widths, num_attention_heads_per_stage=[heads * 2**i for i in range(4)],
                               global_attention_blocks=global_blocks, window_size_per_stage=windows,
                               window_positional_embedding_background_size=background)
    vision = Sam2VisionConfig(backbone_config=hiera, backbone_channel_list=widths[::-1])
    return Sam2VideoConfig(vision_config=vision)
