"""SAM's mask decoder for many point prompts on one image, without per-prompt copies of image-side work.

Segment-everything sends hundreds of single-point prompts through the mask decoder of one image
embedding. transformers' ``SamMaskDecoder`` (like the official one) copies the image embedding and its
positional encoding once per prompt and runs every projection on every copy. Here the same
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
  pixels, and the pixel shuffle is applied to the few mask channels at the end;
- masks are only upscaled for prompts with at least one output whose predicted IoU passes the
  caller's threshold (the predicted IoU does not depend on the upscaling).

The results equal ``SamMaskDecoder``'s up to floating-point reassociation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import SamModel


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(..., L, C) -> (..., heads, L, C/heads)."""
    return x.unflatten(-1, (n_heads, -1)).transpose(-3, -2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(..., heads, L, d) -> (..., L, heads*d)."""
    return x.transpose(-3, -2).flatten(-2)


def _project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (P, N, C) @ weight.T + a per-position bias (N, K), in one batched product."""
    return torch.baddbmm(bias, x, weight.T.expand(len(x), -1, -1))


@dataclass
class _ImageSide:
    """Per-image tensors shared by every prompt: flattened embedding (N, C) and positional encoding."""

    keys: torch.Tensor
    pe: torch.Tensor
    t2i_keys: torch.Tensor  # layer 0 token→image keys (N, C') and values
    t2i_values: torch.Tensor
    i2t_queries: torch.Tensor  # layer 0 image→token queries (N, C')
    pe_projections: list[torch.Tensor]  # per later layer: pe @ [Wk_t2i | 0 | Wq_i2t] + biases (N, 3C')
    final_pe: torch.Tensor  # final attention: pe @ [Wk | 0] + biases (N, 2C')


class GridDecoder:
    """Decode many single-point prompts on one SAM image embedding (multimask output, 3 masks each)."""

    def __init__(self, model: SamModel, image_embedding: torch.Tensor):
        if image_embedding.shape[0] != 1:
            raise ValueError("GridDecoder takes the embedding of exactly one image")
        self.model = model
        self.decoder = model.mask_decoder
        self.n_heads = self.decoder.config.num_attention_heads
        self.height, self.width = image_embedding.shape[-2:]
        self.image = self._image_side(image_embedding)

    @torch.inference_mode()
    def _image_side(self, image_embedding: torch.Tensor) -> _ImageSide:
        model, decoder = self.model, self.decoder
        dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys = (image_embedding + dense)[0].flatten(1).T  # (N, C)
        pe = model.get_image_wide_positional_embeddings()[0].flatten(1).T.to(keys.dtype)
        first = decoder.transformer.layers[0]
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        with_pe = keys + pe
        pe_projections = []
        for layer in decoder.transformer.layers[1:]:
            t2i_l, i2t_l = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
            pe_projections.append(
                torch.cat([F.linear(pe, t2i_l.k_proj.weight, t2i_l.k_proj.bias), t2i_l.v_proj.bias.expand(len(pe), -1),
                           F.linear(pe, i2t_l.q_proj.weight, i2t_l.q_proj.bias)], -1)
            )
        final = decoder.transformer.final_attn_token_to_image
        final_pe = torch.cat([F.linear(pe, final.k_proj.weight, final.k_proj.bias),
                              final.v_proj.bias.expand(len(pe), -1)], -1)
        return _ImageSide(
            keys=keys,
            pe=pe,
            t2i_keys=t2i.k_proj(with_pe),
            t2i_values=t2i.v_proj(keys),
            i2t_queries=i2t.q_proj(with_pe),
            pe_projections=pe_projections,
            final_pe=final_pe,
        )

    def _token_to_image(self, attn, queries, query_pe, keys, values) -> torch.Tensor:
        """Tokens (P, T, C) attend to image keys/values, shared (N, C') or per prompt (P, N, C')."""
        q = _heads(attn.q_proj(queries + query_pe), self.n_heads)  # (P, h, T, d)
        k, v = _heads(keys, self.n_heads), _heads(values, self.n_heads)
        if keys.dim() == 2:  # shared image side: all prompts' tokens are one batch of queries
            p, h, t, d = q.shape
            out = F.scaled_dot_product_attention(q.transpose(0, 1).reshape(1, h, p * t, d), k[None], v[None])
            out = out[0].reshape(h, p, t, d).transpose(0, 1)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return attn.out_proj(_merge_heads(out))

    def _image_to_token(self, attn, image_queries, queries, query_pe, residual) -> torch.Tensor:
        """``residual`` + image queries (N, C') or (P, N, C') attending to the P prompts' tokens: (P, N, C)."""
        k = _heads(attn.k_proj(queries + query_pe), self.n_heads)  # (P, h, T, d)
        v = _heads(attn.v_proj(queries), self.n_heads)
        q = _heads(image_queries, self.n_heads)  # (h, N, d) or (P, h, N, d)
        scale = q.shape[-1] ** -0.5
        # Scores laid out (P, h, T, N): the softmax over a handful of tokens then runs along long rows.
        scores = k @ (q * scale).transpose(-1, -2)
        weights = torch.softmax(scores, -2, dtype=torch.float32).to(scores.dtype)
        # Output projection before the attention weights: (A V) Wo = A (V Wo), per head. Each head's
        # weights sum to 1 over the tokens, so the bias can ride along as bias / heads on every token.
        w_out = attn.out_proj.weight.T.unflatten(0, (self.n_heads, -1))  # (h, d, C)
        projected = v @ w_out + attn.out_proj.bias / self.n_heads  # (P, h, T, C)
        p, h, t, n = weights.shape
        return torch.baddbmm(residual, weights.reshape(p, h * t, n).transpose(1, 2), projected.reshape(p, h * t, -1))

    @torch.inference_mode()
    def tokens(self, sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the two-way transformer for sparse prompt embeddings (P, S, C).

        Returns the output tokens (P, T, C) and the final image-side keys (P, N, C).
        """
        decoder, image = self.decoder, self.image
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
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
            if index == 0:
                t2i_keys, t2i_values, i2t_queries = image.t2i_keys, image.t2i_values, image.i2t_queries
                residual = image.keys
            else:
                t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
                weight = torch.cat([t2i.k_proj.weight, t2i.v_proj.weight, i2t.q_proj.weight])
                fused = _project(keys, weight, image.pe_projections[index - 1])
                t2i_keys, t2i_values, i2t_queries = fused.chunk(3, -1)
                residual = keys
            queries = queries + self._token_to_image(
                layer.cross_attn_token_to_image, queries, token_pe, t2i_keys, t2i_values
            )
            queries = layer.layer_norm2(queries)
            queries = layer.layer_norm3(queries + layer.mlp(queries))
            keys = layer.layer_norm4(
                self._image_to_token(layer.cross_attn_image_to_token, i2t_queries, queries, token_pe, residual)
            )
        final = decoder.transformer.final_attn_token_to_image
        fused = _project(keys, torch.cat([final.k_proj.weight, final.v_proj.weight]), image.final_pe)
        final_keys, final_values = fused.chunk(2, -1)
        queries = queries + self._token_to_image(final, queries, token_pe, final_keys, final_values)
        return decoder.transformer.layer_norm_final_attn(queries), keys

    @torch.inference_mode()
    def iou(self, tokens: torch.Tensor) -> torch.Tensor:
        """Predicted IoUs (P, 3) of the three multimask outputs."""
        return self.decoder.iou_prediction_head(tokens[:, 0])[:, 1:]

    @torch.inference_mode()
    def masks(self, tokens: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Low-resolution mask logits (P, 3, 4h, 4w) of the three multimask outputs."""
        decoder = self.decoder
        p, (h, w) = len(keys), (self.height, self.width)
        # Tokens: IoU, then one per mask output; the multimask outputs are masks 1..3.
        hyper = torch.stack(
            [decoder.output_hypernetworks_mlps[i](tokens[:, 1 + i]) for i in range(1, decoder.num_mask_tokens)], -1
        )  # (P, C/8, 3)
        conv1, conv2 = decoder.upscale_conv1, decoder.upscale_conv2
        # Transposed convolution, kernel 2 stride 2 == per-pixel linear map to 2×2 sub-pixels × channels.
        w1 = conv1.weight.permute(0, 2, 3, 1).flatten(1)  # (C, 2*2*C1), sub-pixel (a, b) major
        up = F.linear(keys, w1.T, conv1.bias.repeat(4)).unflatten(-1, (4, -1))  # (P, N, 4, C1)
        norm = decoder.upscale_layer_norm
        up = decoder.activation(F.layer_norm(up, norm.normalized_shape, norm.weight, norm.bias, norm.eps))
        w2 = conv2.weight.permute(0, 2, 3, 1).flatten(1)  # (C1, 2*2*C2)
        up = decoder.activation(F.linear(up, w2.T, conv2.bias.repeat(4)).unflatten(-1, (4, -1)))  # (P, N, 4, 4, C2)
        logits = up.flatten(1, 3) @ hyper  # (P, N*16, 3)
        # (P, i, j, a, b, c, d, m) -> (P, m, 4i + 2a + c, 4j + 2b + d)
        logits = logits.reshape(p, h, w, 2, 2, 2, 2, -1).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return logits.reshape(p, -1, 4 * h, 4 * w)
