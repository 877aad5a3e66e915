"""One interface over the SAM-family image models of transformers (SAM, SAM-HQ, SAM 2.1, EdgeTAM, SAM 3).

A backend turns an RGB frame into an image embedding (the expensive vision encoder, run once per
frame or crop) and turns (embedding, prompts) into low-resolution mask logits and predicted IoUs
(the cheap prompt encoder + mask decoder). It also owns the geometry of its model: how frame pixel
coordinates map into model coordinates and how low-resolution logits go back to frame size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from samtrack.models.attention import use_cpu_attention
from samtrack.models.common import keep_freed_cpu_memory
from samtrack.models.sam.grid_decoder import GridDecoder
from samtrack.models.sam.vit import prepare_vit_encoder

# Point prompts decoded at once by the grid decoder's mask upscaling (bounds its working memory).
UPSCALE_CHUNK = 8

# A grid decoder: (points (P, 2) in model coordinates, IoU threshold or None) ->
# (logits (K, h, w) and IoUs (K,) of the kept outputs in prompt-major order, keep mask (P, K_per_prompt)).
GridDecode = Callable[[torch.Tensor, float | None], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

# Mask prompts given as binary masks become logits of +/-10 (the scale SAM 2 uses for mask inputs).
MASK_PROMPT_LOGIT = 10.0


@dataclass
class Embedding:
    """Image embeddings of one or more images (crops) of the same frame, ready for the mask decoder.

    ``features`` holds the model-specific tensors, each with the image batch as its first dimension;
    ``input_sizes`` the (height, width) each image had after resizing, and ``original_sizes`` before.
    """

    features: tuple[Any, ...]
    input_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.input_sizes)

    def select(self, index: int) -> Embedding:
        """The embedding of image ``index`` alone."""
        def pick(feature: Any) -> Any:
            if isinstance(feature, (list, tuple)):
                return type(feature)(pick(f) for f in feature)
            return feature[index : index + 1]

        return Embedding(
            tuple(pick(f) for f in self.features), [self.input_sizes[index]], [self.original_sizes[index]]
        )


class PromptModel:
    """Base class: a transformers SAM-family model plus its image processor."""

    family = "sam"

    def __init__(self, model: PreTrainedModel, processor: Any, device: torch.device, dtype: torch.dtype):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.device = device
        self.dtype = dtype
        if device.type == "cpu":
            keep_freed_cpu_memory()
        if self.family in ("sam", "sam-hq"):
            prepare_vit_encoder(self.model.vision_encoder)
        elif self.family == "sam2":
            use_cpu_attention(self.model)

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """Size of the low-resolution logits the decoder predicts and accepts as mask prompt (256 for SAM)."""
        side = 4 * self.model.config.prompt_encoder_config.image_embedding_size
        return (side, side)

    @property
    def vision_encoder(self) -> torch.nn.Module:
        """The image encoder module (its calls are what one-encoder-pass-per-frame counts)."""
        return self.model.vision_encoder

    @torch.inference_mode()
    def embed(self, images: list[np.ndarray]) -> Embedding:
        """Run the vision encoder once on a batch of RGB uint8 images (any sizes)."""
        inputs = self.processor(images=images, return_tensors="pt")
        pixels = inputs["pixel_values"].to(device=self.device, dtype=self.dtype)
        features = self._encode(pixels)
        originals = [tuple(int(v) for v in s) for s in inputs["original_sizes"]]
        return Embedding(features, self._input_sizes(inputs, originals), originals)

    def _input_sizes(self, inputs: Any, originals: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [tuple(int(v) for v in s) for s in inputs["reshaped_input_sizes"]]

    def _encode(self, pixels: torch.Tensor) -> tuple[Any, ...]:
        return (self.model.get_image_embeddings(pixels),)

    def to_model_coords(self, xy: torch.Tensor, embedding: Embedding) -> torch.Tensor:
        """Map frame pixel coordinates (..., 2) to the model's input coordinates."""
        (in_h, in_w), (orig_h, orig_w) = embedding.input_sizes[0], embedding.original_sizes[0]
        scale = torch.tensor([in_w / orig_w, in_h / orig_h], dtype=torch.float64)
        return (xy.to(torch.float64) * scale).to(torch.float32)

    @torch.inference_mode()
    def decode(
        self,
        embedding: Embedding,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict masks for P prompts on one image.

        Args:
            embedding: the embedding of exactly one image.
            points: (P, N, 2) model input coordinates (see ``to_model_coords``); labels: (P, N) with
                1 positive, 0 negative.
            boxes: (P, 4) model input coordinates x0, y0, x1, y1.
            mask_input: (1, 1, 256, 256) low-resolution logits of a previous prediction (``mask_input_size``).
            multimask: three candidate masks per prompt (True) or the single-mask output (False).

        Returns:
            logits (P, K, 256, 256) and predicted IoUs (P, K), float32 on the model's device.
        """
        kwargs: dict[str, Any] = {"multimask_output": multimask}
        if points is not None:
            kwargs["input_points"] = points[None].to(self.device, self.dtype)
            kwargs["input_labels"] = labels[None].to(self.device, torch.int64)
        if boxes is not None:
            kwargs["input_boxes"] = boxes[None].to(self.device, self.dtype)
        if mask_input is not None:
            kwargs["input_masks"] = mask_input.to(self.device, self.dtype)
        outputs = self.model(**self._embedding_kwargs(embedding), **kwargs)
        return outputs.pred_masks[0].float(), outputs.iou_scores[0].float()

    def _embedding_kwargs(self, embedding: Embedding) -> dict[str, Any]:
        return {"image_embeddings": embedding.features[0]}

    def grid_decoder(self, embedding: Embedding) -> GridDecode:
        """Decode segment-everything's single positive points on one image (multimask), keeping outputs
        whose predicted IoU exceeds the threshold (all of them for None).

        The decoder does the prompt-independent work once per image (see ``grid_decoder.py``) and
        computes masks only for prompts with a kept output.
        """
        fast = self._grid_decoder(embedding)

        @torch.inference_mode()
        def decode(points: torch.Tensor, min_iou: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            xy = points[None, :, None, :].to(self.device, self.dtype)
            labels = torch.ones(xy.shape[:-1], dtype=torch.int64, device=self.device)
            sparse, _ = self.model.prompt_encoder(xy, labels, None, None)
            tokens, keys = fast.tokens(sparse[0])
            iou = fast.iou(tokens).float()
            keep = torch.ones_like(iou, dtype=torch.bool) if min_iou is None else iou > min_iou
            wanted = keep.any(1).nonzero()[:, 0]
            logits = [iou.new_zeros(0, *self.mask_input_size)]
            hyper = fast.hypernetworks(tokens[wanted])
            for start in range(0, len(wanted), UPSCALE_CHUNK):
                rows = wanted[start : start + UPSCALE_CHUNK]
                chunk = fast.masks(hyper[start : start + UPSCALE_CHUNK], keys[rows])
                logits.append(chunk.float()[keep[rows]])
            return torch.cat(logits), iou[keep], keep

        return decode

    def _grid_decoder(self, embedding: Embedding) -> GridDecoder:
        return GridDecoder(self.model, embedding.features[0])

    def upscale(self, logits: torch.Tensor, embedding: Embedding) -> torch.Tensor:
        """Low-resolution logits (..., 256, 256) of one image to its original size (float logits).

        The image processor's ``post_process_masks``: bilinear to the padded input size (1024²), crop
        to the resized image, bilinear to the original size; except that the first step only upsamples
        the low-resolution rows and columns the crop reads (plus one, the bilinear neighbour). The
        output size stays 4× the input size, so every output pixel has the same source coordinates and
        weights: the same values, without computing the padding that the crop throws away.
        """
        shape = logits.shape
        flat = logits.reshape(-1, 1, *shape[-2:]).float()
        (in_h, in_w), original = embedding.input_sizes[0], embedding.original_sizes[0]
        pad = (self.processor.pad_size["height"], self.processor.pad_size["width"])
        factor = pad[0] // shape[-2]
        if pad != (factor * shape[-2], factor * shape[-1]):
            raise ValueError(f"logits of size {tuple(shape[-2:])} do not scale to the padded input {pad}")
        rows, cols = min(-(-in_h // factor) + 1, shape[-2]), min(-(-in_w // factor) + 1, shape[-1])
        flat = F.interpolate(flat[..., :rows, :cols], (rows * factor, cols * factor), mode="bilinear",
                             align_corners=False)[..., :in_h, :in_w]
        flat = F.interpolate(flat, original, mode="bilinear", align_corners=False)
        return flat.reshape(*shape[:-2], *original)


def plain_grid_decoder(model: PromptModel, embedding: Embedding) -> GridDecode:
    """A grid decoder through the model's own forward pass (families without a specialised one)."""

    def decode(points: torch.Tensor, min_iou: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, iou = model.decode(embedding, points[:, None, :], torch.ones(len(points), 1))
        keep = torch.ones_like(iou, dtype=torch.bool) if min_iou is None else iou > min_iou
        return logits[keep], iou[keep], keep

    return decode


class SamHQPromptModel(PromptModel):
    """SAM-HQ: the decoder also consumes early ViT features (intermediate embeddings)."""

    family = "sam-hq"
    grid_decoder = plain_grid_decoder

    def _encode(self, pixels: torch.Tensor) -> tuple[Any, ...]:
        image_embeddings, intermediate = self.model.get_image_embeddings(pixels)
        return (image_embeddings, list(intermediate))

    def _embedding_kwargs(self, embedding: Embedding) -> dict[str, Any]:
        return {"image_embeddings": embedding.features[0], "intermediate_embeddings": embedding.features[1]}


class Sam2PromptModel(PromptModel):
    """SAM 2.1 and EdgeTAM image models: square 1024 input (no aspect-preserving pad), FPN features."""

    family = "sam2"

    def _input_sizes(self, inputs: Any, originals: list[tuple[int, int]]) -> list[tuple[int, int]]:
        side = int(inputs["pixel_values"].shape[-1])
        return [(side, side) for _ in originals]

    def _encode(self, pixels: torch.Tensor) -> tuple[Any, ...]:
        return (list(self.model.get_image_embeddings(pixels)),)

    def _grid_decoder(self, embedding: Embedding) -> GridDecoder:
        *high_resolution, last = embedding.features[0]
        return GridDecoder(self.model, last, high_resolution)

    @property
    def mask_input_size(self) -> tuple[int, int]:
        return tuple(self.model.prompt_encoder.mask_input_size)

    def upscale(self, logits: torch.Tensor, embedding: Embedding) -> torch.Tensor:
        shape = logits.shape
        flat = logits.reshape(-1, 1, *shape[-2:]).float()
        flat = self.processor.post_process_masks([flat], embedding.original_sizes, binarize=False)[0]
        return flat.reshape(*shape[:-2], *embedding.original_sizes[0])

class Sam3PromptModel(Sam2PromptModel):
    """SAM 3's tracker as an image model (``Sam3TrackerModel``): SAM 2's prompt encoder and mask decoder
    over SAM 3's ViT, with a 1008² input and 288² low-resolution masks (``mask_input_size``)."""

    family = "sam3"
