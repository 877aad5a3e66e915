"""Tiny random SAM 3 checkpoints, saved with ``save_pretrained`` exactly as a user's local copy would be.

- :func:`save_tiny_sam3_video`: a ``sam3_video`` directory, the layout of ``facebook/sam3`` (the one
  checkpoint that loads as ``Sam3VideoModel``, ``Sam3Model`` and ``Sam3TrackerVideoModel``), with a
  ``Sam3VideoProcessor`` (image + video processor and a CLIP tokenizer built in code).
- :func:`save_tiny_sam3_image`: a ``sam3`` (image detector) directory with a ``Sam3Processor``.
- :func:`save_tiny_sam3_lite_text`: a ``sam3_lite_text`` directory (the lite-text detectors'
  layout, ``vil-uob/sam3-litetext-*``) with a ``Sam3Processor``.

The real architectures at a tiny size: 112² input (patch 14: an 8×8 top feature map), 2 ViT layers,
widths of 128 (the detector's and tracker's hidden sizes must be multiples of 64 above 64), the
tracker's memory 64 wide (fixed by the library). One frame runs in a few tens of milliseconds on a CPU.
The tracker is initialised with a wider spread and an object-score head that sees its objects, so
that its masks carry real signal (see :func:`save_tiny_sam3_video`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers.convert_slow_tokenizer import bytes_to_unicode

IMAGE_SIZE = 112
PATCH_SIZE = 14
WIDTH = 128  # fpn / detector / tracker width
TEXT_WIDTH = 64
TEXT_LENGTH = 32  # Sam3Processor pads every caption to 32 tokens
OBJECT_SCORE_BIAS = 20.0  # the tracker's object-score logit offset (see save_tiny_sam3_video)


def tiny_clip_tokenizer():
    """A CLIP byte-level BPE tokenizer with every byte (alone and word-final) and no merges: any caption
    tokenizes, one token per character. 512 byte tokens + 2 specials."""
    from transformers import CLIPTokenizer

    chars = list(bytes_to_unicode().values())
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])


def _vision_config(num_layers: int = 2) -> dict:
    side = IMAGE_SIZE // PATCH_SIZE
    return {
        "backbone_config": {
            "model_type": "sam3_vit_model", "hidden_size": WIDTH, "intermediate_size": 2 * WIDTH,
            "num_hidden_layers": num_layers, "num_attention_heads": 2, "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE, "window_size": side // 2, "global_attn_indexes": [num_layers - 1],
            "pretrain_image_size": IMAGE_SIZE,
        },
        "fpn_hidden_size": WIDTH,
        "backbone_feature_sizes": [[4 * side, 4 * side], [2 * side, 2 * side], [side, side]],
    }


def _detector_config(vocab_size: int) -> dict:
    # CLIP pools the text at its end-of-text token: the tokenizer's last id here.
    specials = {"bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1, "pad_token_id": vocab_size - 1}
    return {
        "vision_config": _vision_config(),
        "text_config": {"model_type": "clip_text_model", "vocab_size": vocab_size, "hidden_size": TEXT_WIDTH,
                        "intermediate_size": 2 * TEXT_WIDTH, "projection_dim": TEXT_WIDTH, "num_hidden_layers": 2,
                        "num_attention_heads": 2, "max_position_embeddings": TEXT_LENGTH, "hidden_act": "gelu",
                        **specials},
        "geometry_encoder_config": {"hidden_size": WIDTH, "num_layers": 1, "num_attention_heads": 2,
                                    "intermediate_size": 2 * WIDTH},
        "detr_encoder_config": {"hidden_size": WIDTH, "num_layers": 1, "num_attention_heads": 2,
                                "intermediate_size": 2 * WIDTH},
        "detr_decoder_config": {"hidden_size": WIDTH, "num_layers": 2, "num_queries": 16, "num_attention_heads": 2,
                                "intermediate_size": 2 * WIDTH},
        "mask_decoder_config": {"hidden_size": WIDTH, "num_attention_heads": 2},
    }


def _tracker_config() -> dict:
    side = IMAGE_SIZE // PATCH_SIZE
    return {
        "vision_config": _vision_config(),
        "prompt_encoder_config": {"hidden_size": WIDTH, "image_size": IMAGE_SIZE, "patch_size": PATCH_SIZE},
        "mask_decoder_config": {"hidden_size": WIDTH, "mlp_dim": 2 * WIDTH, "num_attention_heads": 2,
                                "iou_head_hidden_dim": WIDTH},
        "image_size": IMAGE_SIZE,
        "memory_attention_hidden_size": WIDTH, "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 2 * WIDTH, "memory_attention_rope_feat_sizes": [side, side],
        "memory_encoder_hidden_size": WIDTH, "mask_downsampler_embed_dim": WIDTH,
        "memory_fuser_embed_dim": WIDTH, "memory_fuser_intermediate_dim": 2 * WIDTH,
        "memory_fuser_num_layers": 1,
        "initializer_range": 0.2,  # as the SAM 2 test models: random masks with logits well away from 0
    }


def _image_processor():
    from transformers import Sam3ImageProcessor

    low = 4 * IMAGE_SIZE // PATCH_SIZE  # the tracker's low-resolution mask size (288 at full size)
    return Sam3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                              mask_size={"height": low, "width": low})


def tiny_sam3_video_config():
    """The configuration of a tiny ``sam3_video`` model (detector + tracker sharing one vision backbone)."""
    from transformers import Sam3VideoConfig

    tokenizer_size = len(tiny_clip_tokenizer())
    return Sam3VideoConfig(detector_config={"model_type": "sam3", **_detector_config(tokenizer_size)},
                           tracker_config={"model_type": "sam3_tracker_video", **_tracker_config()},
                           low_res_mask_size=4 * IMAGE_SIZE // PATCH_SIZE)


def save_tiny_sam3_video(out: Path, seed: int = 0, hub_layout: bool = False) -> Path:
    """A random tiny ``sam3_video`` checkpoint directory (config, safetensors weights, processor with its
    tokenizer), laid out like ``save_pretrained`` copies of ``facebook/sam3``.

    transformers saves the tracker's weights under ``tracker_model.tracker_model.`` (the tracker's own
    prefix mapping is reverted once more on save), whereas the hub's ``facebook/sam3`` file has them
    under ``tracker_model.``; ``hub_layout=True`` writes the hub's key names instead.
    """
    from safetensors.torch import load_file, save_file
    from transformers import Sam2VideoVideoProcessor, Sam3VideoModel, Sam3VideoProcessor

    torch.manual_seed(seed)
    model = Sam3VideoModel(tiny_sam3_video_config()).eval()
    # A random object-score head says "absent" for about half of all objects and frames, and an
    # absent object's masks are the constant -1024: a tracker that sees its objects, as a trained one
    # does on visible objects, gives tests real logits to compare.
    with torch.no_grad():
        model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(OBJECT_SCORE_BIAS)
    model.save_pretrained(out)
    if hub_layout:
        weights = Path(out) / "model.safetensors"
        tensors = load_file(weights)
        save_file({k.replace("tracker_model.tracker_model.", "tracker_model.", 1): v for k, v in tensors.items()},
                  weights, metadata={"format": "pt"})
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    video = Sam2VideoVideoProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    Sam3VideoProcessor(image_processor=_image_processor(), video_processor=video,
                       tokenizer=tiny_clip_tokenizer()).save_pretrained(out)
    return Path(out)


def save_tiny_sam3_image(out: Path, seed: int = 0) -> Path:
    """A random tiny ``sam3`` (image detector) directory with a ``Sam3Processor``."""
    from transformers import Sam3Config, Sam3Model, Sam3Processor

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    Sam3Model(Sam3Config(**_detector_config(len(tokenizer)))).eval().save_pretrained(out)
    Sam3Processor(image_processor=_image_processor(), tokenizer=tokenizer).save_pretrained(out)
    return Path(out)


def save_tiny_sam3_lite_text(out: Path, seed: int = 0) -> Path:
    """A random tiny ``sam3_lite_text`` directory (SAM 3 with a small text encoder) with a ``Sam3Processor``."""
    from transformers import Sam3LiteTextConfig, Sam3LiteTextModel, Sam3Processor

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    config = _detector_config(len(tokenizer))
    config["text_config"] = {"vocab_size": len(tokenizer), "hidden_size": TEXT_WIDTH,
                             "intermediate_size": 2 * TEXT_WIDTH, "projection_dim": TEXT_WIDTH,
                             "num_hidden_layers": 2, "num_attention_heads": 2,
                             "max_position_embeddings": TEXT_LENGTH}
    Sam3LiteTextModel(Sam3LiteTextConfig(**config)).eval().save_pretrained(out)
    Sam3Processor(image_processor=_image_processor(), tokenizer=tokenizer).save_pretrained(out)
    return Path(out)
