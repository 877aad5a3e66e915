"""Batched single-frame steps of SAM 2.1 / EdgeTAM / SAM 3 tracker video models: many objects in one model call.

This is the one module that calls transformers' private methods (``_use_multimask``,
``_encode_new_memory``, ``_build_memory_attention_inputs``, ``_process_object_pointers``): they are not a
stable API, so pyproject pins transformers to the minor release the tests ran (parity tests against
the library's own per-object inference catch a change).

transformers' ``Sam2VideoModel.forward`` (and EdgeTAM's) runs the memory attention and the mask
decoder once per object, and its single-frame decoder picks the best multimask output with an index
that is only right for a batch of one. These functions drive the same submodules (vision encoder,
memory attention, prompt encoder, mask decoder, memory encoder) with the objects stacked on the batch
axis, following the library's per-object code step by step so the numbers match it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import EdgeTamVideoModel, Sam2VideoModel, Sam3TrackerVideoModel

VideoModel = Sam2VideoModel | EdgeTamVideoModel | Sam3TrackerVideoModel

# SAM 2's mask logit for "object not in this frame" (NO_OBJ_SCORE in the official code).
NO_OBJECT_LOGIT = -1024.0


@dataclass
class FrameFeatures:
    """Vision features of one frame, sequence-first as the library keeps them (``HW x 1 x C``)."""

    feats: list[torch.Tensor]
    pos: list[torch.Tensor]


@dataclass
class Decoded:
    """Per-object outputs of one frame, objects on the batch axis."""

    low_res: torch.Tensor  # B x 1 x h x w mask logits (the prompt encoder's mask_input_size)
    high_res: torch.Tensor  # B x 1 x S x S mask logits at the model's input size
    pointer: torch.Tensor  # B x 1 x C object pointers
    score: torch.Tensor  # B x 1 x 1 object-appearance logits

    def select(self, index: torch.Tensor) -> Decoded:
        """The objects at `index` (a 1-D index tensor), in that order."""
        return Decoded(*(getattr(self, name).index_select(0, index) for name in _FIELDS))


_FIELDS = ("low_res", "high_res", "pointer", "score")


def memory_batch_dim(model: VideoModel) -> int:
    """Axis of the object batch in the memory encoder's output (SAM 2: HW x B x C; EdgeTAM: B x T x C)."""
    return 0 if isinstance(model, EdgeTamVideoModel) else 1


def encode_frame(model: VideoModel, pixel_values: torch.Tensor) -> FrameFeatures:
    out = model.get_image_features(pixel_values, return_dict=True)
    return FrameFeatures(list(out.fpn_hidden_states), list(out.fpn_position_encoding))


def _image_embeddings(model: VideoModel, frame: FrameFeatures, top: torch.Tensor) -> list[torch.Tensor]:
    """High-resolution feature maps (shared by all objects) plus each object's top-level map."""
    batch = top.shape[0]
    high = [x.permute(1, 2, 0).reshape(1, x.size(2), *size).expand(batch, -1, -1, -1)
            for x, size in zip(frame.feats[:-1], model.backbone_feature_sizes[:-1])]
    return [*high, top]


def _top_map(model: VideoModel, flat: torch.Tensor) -> torch.Tensor:
    """``HW x B x C`` -> ``B x C x H x W`` for the lowest-resolution level."""
    return flat.permute(1, 2, 0).reshape(flat.size(1), model.hidden_dim, *model.backbone_feature_sizes[-1])


def decode(model: VideoModel, embeddings: list[torch.Tensor], mask_prompt: torch.Tensor | None,
           multimask: bool) -> Decoded:
    """SAM head for a batch of objects without clicks (an empty point, label -1, as the library pads)."""
    top = embeddings[-1]
    batch, device, dtype = top.shape[0], top.device, top.dtype
    size = tuple(model.prompt_encoder.mask_input_size)
    if mask_prompt is not None and tuple(mask_prompt.shape[-2:]) != size:
        # SAM 3's mask downsampler gives image_size / 4 (252), its prompt encoder reads 4 x the
        # feature map (288): resized as the library's single-frame forward does.
        mask_prompt = F.interpolate(mask_prompt.float(), size=size, mode="bilinear", align_corners=False,
                                    antialias=True).to(mask_prompt.dtype)
    points = torch.zeros(batch, 1, 1, 2, dtype=dtype, device=device)
    labels = -torch.ones(batch, 1, 1, dtype=torch.int32, device=device)
    sparse, dense = model.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None,
                                         input_masks=mask_prompt)
    positional = model.get_image_wide_positional_embeddings().repeat(batch, 1, 1, 1)
    masks, iou, tokens, score = model.mask_decoder(
        image_embeddings=top, image_positional_embeddings=positional, sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense, multimask_output=multimask, high_resolution_features=embeddings[:-1])
    appearing = score > 0  # B x 1 x 1
    masks = torch.where(appearing[..., None, None], masks, NO_OBJECT_LOGIT)  # B x 1 x M x h x w
    token = tokens[:, :, 0]
    if multimask:
        best = iou[:, 0].argmax(dim=-1)  # the highest predicted IoU per object
        rows = torch.arange(batch, device=device)
        low = masks[rows, 0, best][:, None]
        if tokens.size(2) > 1:
            token = tokens[rows, 0, best][:, None]
    else:
        low = masks[:, :, 0]
    high = F.interpolate(low.float(), size=(model.image_size, model.image_size), mode="bilinear",
                         align_corners=False).to(low.dtype)
    pointer = model.object_pointer_proj(token)
    weight = appearing.to(pointer.dtype)
    pointer = weight * pointer + (1 - weight) * model.no_object_pointer
    return Decoded(low, high, pointer, score)


def mask_as_output(model: VideoModel, frame: FrameFeatures, masks: torch.Tensor) -> Decoded:
    """Binary masks (``B x 1 x S x S``) taken as the prediction, as SAM 2 does for mask prompts:
    logits -10/+10, the object pointer from the SAM head prompted with the mask."""
    batch = masks.shape[0]
    top = _top_map(model, frame.feats[-1]).expand(batch, -1, -1, -1)
    masks = masks.to(top.dtype)
    high = masks * 20.0 - 10.0
    size = tuple(model.prompt_encoder.mask_input_size)  # image_size / 4 for SAM 2.1 / EdgeTAM, not SAM 3
    low = F.interpolate(high.float(), size=size, mode="bilinear", align_corners=False,
                        antialias=True).to(top.dtype)
    pointer = decode(model, _image_embeddings(model, frame, top), model.mask_downsample(masks), True).pointer
    appearing = masks.flatten(1).any(dim=1)[:, None, None].to(top.dtype)  # B x 1 x 1
    pointer = appearing * pointer + (1 - appearing) * model.no_object_pointer
    return Decoded(low, high, pointer, appearing * 20.0 - 10.0)


def track(model: VideoModel, frame: FrameFeatures, memory: torch.Tensor, memory_pos: torch.Tensor,
          num_pointer_tokens: int, num_memory_frames: int) -> Decoded:
    """Memory attention of the frame on a batch of objects' memories, then the SAM head."""
    batch = memory.shape[1]
    current = frame.feats[-1].expand(-1, batch, -1)
    extra = {"num_spatial_memory_tokens": num_memory_frames} if isinstance(model, EdgeTamVideoModel) else {}
    fused = model.memory_attention(
        current_vision_features=current, current_vision_position_embeddings=frame.pos[-1].expand(-1, batch, -1),
        memory=memory.to(current.dtype), memory_posision_embeddings=memory_pos,
        num_object_pointer_tokens=num_pointer_tokens, **extra)  # 1 x B x HW x C
    top = fused[0].transpose(1, 2).reshape(batch, model.hidden_dim, *model.backbone_feature_sizes[-1])
    multimask = model._use_multimask(False, None)
    return decode(model, _image_embeddings(model, frame, top), None, multimask)


def encode_memory(model: VideoModel, frame: FrameFeatures, decoded: Decoded,
                  binarize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory features and their positional encoding for a batch of objects (library layout)."""
    batch = decoded.high_res.shape[0]
    if isinstance(model, EdgeTamVideoModel) and batch > 1:
        # EdgeTAM's perceiver resampler views an expanded tensor, which only works for a batch of one.
        parts = [encode_memory(model, frame, decoded.select(torch.tensor([i], device=decoded.low_res.device)), binarize) for i in range(batch)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    feats = frame.feats[-1].expand(-1, batch, -1)
    return model._encode_new_memory(current_vision_feats=feats, pred_masks_high_res=decoded.high_res,
                                    object_score_logits=decoded.score, is_mask_from_pts=binarize)


def memory_inputs(model: VideoModel, slots: list[tuple[int, dict[str, torch.Tensor]]],
                  device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The memory-attention inputs (features, positions) of stacked memory frames, as the library builds them:
    `slots` are (temporal offset, {"maskmem_features", "maskmem_pos_enc"}) pairs."""
    return model._build_memory_attention_inputs(slots, device)


def object_pointers(model: VideoModel, offsets: list[int], pointers: list[torch.Tensor], max_pointers: int,
                    batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The object-pointer tokens and their temporal positions, as the library builds them."""
    return model._process_object_pointers(offsets, pointers, max_pointers, batch, model.hidden_dim, device)
