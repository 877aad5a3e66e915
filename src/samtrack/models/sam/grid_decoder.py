"""The SAM-family mask decoder for many point prompts on one image, without per-prompt copies of image-side work.

Segment-everything sends hundreds of single-point prompts through the mask decoder of one image
embedding. transformers' ``SamMaskDecoder`` and ``Sam2MaskDecoder`` (EdgeTAM reuses the latter's
design), like the official ones, copy the image embedding and its positional encoding (and SAM 2's
high-resolution features) once per prompt and run every projection on every copy. Here the same
computation is arranged so that what does not depend on the prompt is done once per image:

- in the first two-way layer the image side is still the shared embedding: the keys/values of
  token→image attention and the queries of image→token attention are projected once;
- the positional encoding's share of every later image-side projection, ``pe @ W``, is computed once
  (``(keys + pe) @ W == keys @ W + pe @ W``), and the projections of one layer that read the same
  keys run as one matrix product;
- image→token attention has only a handful of tokens as keys: its output projection is applied to
  the token values before the attention weights (``(A @ V) @ Wo == A @ (V @ Wo)``), which turns a
  4096×128×256 product per prompt into a 4096×(heads·tokens)×256 one;
- the upscaling transposed convolutions (kernel 2, stride 2) are matrix products on channels-last
  pixels, and the pixel shuffle is applied to the few mask channels at the end; SAM 2's
  high-resolution features, which the upscaling adds after each convolution, are laid out once in the
  same sub-pixel order and join the convolutions' biases;
- masks are only upscaled for prompts with at least one output whose predicted IoU passes the
  caller's threshold (the predicted IoU does not depend on the upscaling).

SAM 2 adds an object-score token before the IoU token; its score does not change the outputs of
the image model and is not computed. With multimask output SAM 2 returns masks 1..3 and their
(sigmoid) IoUs, as SAM does; its stability-based choice only applies to single-mask output.

The results equal the models' own decoders up to floating-point reassociation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(..., L, C) -> (..., heads, L, C/heads)."""
    return x.unflatten(-1, (n_heads, -1)).transpose(-3, -2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(..., heads, L, d) -> (..., L, heads*d)."""
    return x.transpose(-3, -2).flatten(-2)


def _out_proj(attn: torch.nn.Module) -> torch.nn.Linear:
    """An attention block's output projection (``out_proj`` in SAM, ``o_proj`` in SAM 2)."""
    return attn.out_proj if hasattr(attn, "out_proj") else attn.o_proj


@dataclass
class _ImageSide:
    """Per-image tensors shared by every prompt (N image positions, heads h of width d)."""

    keys: torch.Tensor  # embedding + dense prompt, flattened (N, C)
    t2i_keys: torch.Tensor  # layer 0 token→image keys (N, C') and values, projected
    t2i_values: torch.Tensor
    i2t_queries: torch.Tensor  # layer 0 image→token queries, projected, as (h, d, N)
    pe_t2i: list[torch.Tensor]  # later layers and the final attention: (pe @ Wk.T) as (h, d, N)
    pe_i2t: list[torch.Tensor]  # later layers: (pe @ Wq.T + bq) as (h, d, N)


class GridDecoder:
    """Decode many single-point prompts on one image embedding of SAM or SAM 2 (multimask output, 3 masks
    each). ``high_resolution`` holds SAM 2's two high-resolution feature maps (4× then 2× the
    embedding's size, as ``get_image_embeddings`` returns them); SAM has none."""

    def __init__(self, model: PreTrainedModel, image_embedding: torch.Tensor,
                 high_resolution: Sequence[torch.Tensor] = ()):
        if image_embedding.shape[0] != 1:
            raise ValueError("GridDecoder takes the embedding of exactly one image")
        self.model = model
        self.decoder = model.mask_decoder
        self.n_heads = self.decoder.config.num_attention_heads
        self.height, self.width = image_embedding.shape[-2:]
        # Output tokens: SAM 2's object-score token, then (both) the IoU token and the mask tokens.
        extra = [self.decoder.obj_score_token.weight] if hasattr(self.decoder, "obj_score_token") else []
        self.output_tokens = torch.cat([*extra, self.decoder.iou_token.weight, self.decoder.mask_tokens.weight])
        self.iou_index = len(extra)
        self.image = self._image_side(image_embedding)
        self.upscale_biases = self._upscale_biases(high_resolution)

    def _by_head(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C') -> (h, d, N)."""
        return x.T.unflatten(0, (self.n_heads, -1))

    @torch.inference_mode()
    def _image_side(self, image_embedding: torch.Tensor) -> _ImageSide:
        model, decoder = self.model, self.decoder
        dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys = (image_embedding + dense)[0].flatten(1).T  # (N, C)
        pe = model.get_image_wide_positional_embeddings()[0].flatten(1).T.to(keys.dtype)
        first, *later = decoder.transformer.layers
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        finals = [layer.cross_attn_token_to_image for layer in later] + [decoder.transformer.final_attn_token_to_image]
        return _ImageSide(
            keys=keys,
            t2i_keys=t2i.k_proj(keys + pe),
            t2i_values=t2i.v_proj(keys),
            i2t_queries=self._by_head(i2t.q_proj(keys + pe)),
            pe_t2i=[self._by_head(pe @ attn.k_proj.weight.T) for attn in finals],
            pe_i2t=[self._by_head(layer.cross_attn_image_to_token.q_proj(pe)) for layer in later],
        )

    @torch.inference_mode()
    def _upscale_biases(self, high_resolution: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """What the two upscaling steps add to their matrix products, in their channels-last sub-pixel
        layout: the convolutions' biases, plus SAM 2's high-resolution features.

        Step 1 output (N, 2*2*C1) holds pixel (2i + a, 2j + b) of the 2× map at [i*w + j, (2a + b)*C1 + ch];
        step 2 output (N, 4, 2*2*C2) holds pixel (4i + 2a + c, 4j + 2b + d) at [i*w + j, 2a + b, (2c + d)*C2 + ch].
        """
        conv1, conv2 = self.decoder.upscale_conv1, self.decoder.upscale_conv2
        first, second = conv1.bias.repeat(4), conv2.bias.repeat(4)
        if not high_resolution:
            return first, second
        s0, s1 = high_resolution
        h, w = self.height, self.width
        s1 = s1[0].reshape(-1, h, 2, w, 2).permute(1, 3, 2, 4, 0).reshape(h * w, -1)
        s0 = s0[0].reshape(-1, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0).reshape(h * w, 4, -1)
        return first + s1, second + s0

    def _heads_of(self, weight: torch.Tensor) -> torch.Tensor:
        """A projection weight (C', C) as (h, d, C)."""
        return weight.unflatten(0, (self.n_heads, -1))

    def _shared_token_to_image(self, attn, queries: torch.Tensor, token_pe: torch.Tensor) -> torch.Tensor:
        """Layer 0: tokens (P, T, C) attend to the shared, already projected image keys and values."""
        q = _heads(attn.q_proj(queries + token_pe), self.n_heads)  # (P, h, T, d)
        k, v = _heads(self.image.t2i_keys, self.n_heads), _heads(self.image.t2i_values, self.n_heads)
        p, h, t, d = q.shape
        # All prompts' tokens are one batch of queries against the same keys.
        out = F.scaled_dot_product_attention(q.transpose(0, 1).reshape(1, h, p * t, d), k[None], v[None])
        return _out_proj(attn)(_merge_heads(out[0].reshape(h, p, t, d).transpose(0, 1)))

    def _token_to_image(self, attn, queries: torch.Tensor, token_pe: torch.Tensor, keys: torch.Tensor,
                        pe_keys: torch.Tensor) -> torch.Tensor:
        """Tokens (P, T, C) attend to per-prompt image keys (P, N, C), projected on the token side.

        scores = q . ((keys + pe) Wk.T + bk) = (q Wk) . keys + q . (pe Wk.T) (+ q . bk, the same for
        every position: softmax drops it); out = A ((keys Wv.T) + bv) = (A keys) Wv.T + bv.
        """
        q = _heads(attn.q_proj(queries + token_pe), self.n_heads) * attn.scaling  # (P, h, T, d)
        qk = (q @ self._heads_of(attn.k_proj.weight)).flatten(1, 2)  # (P, h*T, C)
        pe_scores = torch.einsum("phtd,hdn->phtn", q, pe_keys).flatten(1, 2)  # no per-prompt copy of pe_keys
        scores = torch.baddbmm(pe_scores, qk, keys.transpose(1, 2)).unflatten(1, (self.n_heads, -1))  # (P, h, T, N)
        weights = torch.softmax(scores, -1, dtype=torch.float32).to(scores.dtype)
        mixed = (weights.flatten(1, 2) @ keys).unflatten(1, (self.n_heads, -1))  # (P, h, T, C)
        values = mixed @ self._heads_of(attn.v_proj.weight).transpose(-1, -2)  # (P, h, T, d)
        values = values + attn.v_proj.bias.unflatten(0, (self.n_heads, 1, -1))
        return _out_proj(attn)(_merge_heads(values))

    def _image_to_token(self, attn, scores_of: torch.Tensor, queries: torch.Tensor, token_pe: torch.Tensor,
                        residual: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """``residual`` + the image positions attending to the P prompts' tokens: (P, N, C).

        Image queries are ``scores_of`` (h, d, N): the shared projected queries of layer 0, or in later
        layers the positional share pe Wq.T + bq, to which (k Wq) . keys adds each prompt's own keys.
        """
        k = _heads(attn.k_proj(queries + token_pe), self.n_heads) * attn.scaling  # (P, h, T, d)
        v = _heads(attn.v_proj(queries), self.n_heads)
        # Scores laid out (P, h, T, N): the softmax over a handful of tokens then runs along long rows.
        # einsum multiplies per head, without a copy of the shared (h, d, N) queries for every prompt.
        scores = torch.einsum("phtd,hdn->phtn", k, scores_of)
        if keys is not None:
            kq = (k @ self._heads_of(attn.q_proj.weight)).flatten(1, 2)  # (P, h*T, C)
            scores = torch.baddbmm(scores.flatten(1, 2), kq, keys.transpose(1, 2)).unflatten(1, (self.n_heads, -1))
        weights = torch.softmax(scores, -2, dtype=torch.float32).to(scores.dtype)
        # Output projection before the attention weights: (A V) Wo = A (V Wo), per head. Each head's
        # weights sum to 1 over the tokens, so the bias can ride along as bias / heads on every token.
        out_proj = _out_proj(attn)
        w_out = out_proj.weight.T.unflatten(0, (self.n_heads, -1))  # (h, d, C)
        projected = v @ w_out + out_proj.bias / self.n_heads  # (P, h, T, C)
        mixed = (weights.flatten(1, 2).transpose(1, 2), projected.flatten(1, 2))
        if keys is None:  # layer 0: the residual is the image embedding every prompt shares
            return torch.baddbmm(residual, *mixed)
        return residual.baddbmm_(*mixed)  # later layers: the prompts' own keys, not needed after this

    @torch.inference_mode()
    def tokens(self, sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the two-way transformer for sparse prompt embeddings (P, S, C).

        Returns the output tokens (P, T, C) and the final image-side keys (P, N, C).
        """
        decoder, image, output_tokens = self.decoder, self.image, self.output_tokens
        token_pe = torch.cat([output_tokens.expand(len(sparse), -1, -1), sparse.to(output_tokens.dtype)], 1)
        queries = token_pe
        keys = None
        for index, layer in enumerate(decoder.transformer.layers):
            if index == 0:
                queries = layer.self_attn(query=queries[None], key=queries[None], value=queries[None])[0][0]
            else:
                q = queries + token_pe
                queries = queries + layer.self_attn(query=q[None], key=q[None], value=queries[None])[0][0]
            queries = layer.layer_norm1(queries)
            t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
            if index == 0:
                queries = queries + self._shared_token_to_image(t2i, queries, token_pe)
            else:
                queries = queries + self._token_to_image(t2i, queries, token_pe, keys, image.pe_t2i[index - 1])
            queries = layer.layer_norm2(queries)
            queries = layer.layer_norm3(queries + layer.mlp(queries))
            if index == 0:
                keys = self._image_to_token(i2t, image.i2t_queries, queries, token_pe, image.keys)
            else:
                keys = self._image_to_token(i2t, image.pe_i2t[index - 1], queries, token_pe, keys, keys)
            keys = layer.layer_norm4(keys)
        final = decoder.transformer.final_attn_token_to_image
        queries = queries + self._token_to_image(final, queries, token_pe, keys, image.pe_t2i[-1])
        return decoder.transformer.layer_norm_final_attn(queries), keys

    @torch.inference_mode()
    def iou(self, tokens: torch.Tensor) -> torch.Tensor:
        """Predicted IoUs (P, 3) of the three multimask outputs."""
        return self.decoder.iou_prediction_head(tokens[:, self.iou_index])[:, 1:]

    @torch.inference_mode()
    def hypernetworks(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-prompt weights (P, C/8, 3) that turn upscaled features into the three multimask logits."""
        decoder = self.decoder
        # Tokens: (object score,) IoU, then one per mask output; the multimask outputs are masks 1..3.
        first_mask = self.iou_index + 1
        return torch.stack(
            [decoder.output_hypernetworks_mlps[i](tokens[:, first_mask + i]) for i in range(1, decoder.num_mask_tokens)],
            -1,
        )

    @torch.inference_mode()
    def masks(self, hyper: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Low-resolution mask logits (P, 3, 4h, 4w) of the three multimask outputs, from the prompts'
        hypernetwork weights (P, C/8, 3) and final image-side keys (P, N, C)."""
        decoder = self.decoder
        p, (h, w) = len(keys), (self.height, self.width)
        conv1, conv2 = decoder.upscale_conv1, decoder.upscale_conv2
        bias1, bias2 = self.upscale_biases
        # Transposed convolution, kernel 2 stride 2 == per-pixel linear map to 2×2 sub-pixels × channels.
        w1 = conv1.weight.permute(0, 2, 3, 1).flatten(1)  # (C, 2*2*C1), sub-pixel (a, b) major
        up = F.linear(keys, w1.T, bias1).unflatten(-1, (4, -1))  # (P, N, 4, C1)
        norm = decoder.upscale_layer_norm
        up = decoder.activation(F.layer_norm(up, norm.normalized_shape, norm.weight, norm.bias, norm.eps))
        w2 = conv2.weight.permute(0, 2, 3, 1).flatten(1)  # (C1, 2*2*C2)
        up = decoder.activation(F.linear(up, w2.T, bias2).unflatten(-1, (4, -1)))  # (P, N, 4, 4, C2)
        logits = up.flatten(1, 3) @ hyper  # (P, N*16, 3)
        # (P, i, j, a, b, c, d, m) -> (P, m, 4i + 2a + c, 4j + 2b + d)
        logits = logits.reshape(p, h, w, 2, 2, 2, 2, -1).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return logits.reshape(p, -1, 4 * h, 4 * w)
