"""Attention of SAM's ViT image encoder without the full relative-position bias in memory.

SAM's encoder adds decomposed relative positions to its attention scores: for a query at (y, x) and a
key at (ky, kx) the bias is ``rel_h[q, ky] + rel_w[q, kx]``, with ``rel_h`` and ``rel_w`` small
(queries × side). transformers materialises the full bias, queries × keys × heads, before calling SDPA:
805 MB per global layer at 1024 px (64×64 tokens, 12 heads), written once and copied once more, which
costs more than the attention products themselves on a CPU. Here the bias is built for a band of query
rows at a time into one reused buffer (a few tens of MB, warm in cache) and each band runs through SDPA
against all keys. Same function as transformers' ``SamVisionSdpaAttention`` up to floating-point
reassociation (the softmax of each query row sees the same scores).

The patch embedding's convolution also runs channels-last, so that its output, which transformers
permutes to (B, H, W, C) tokens, is contiguous. In NCHW it is not, and every later residual sum
keeps that transposed layout, so each layer norm of every layer first copies its input (24 copies of
the 64×64×768 token map per encoder pass; ViT-B at 1024 px, one thread: 8.50 -> 8.21 s bf16).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

# Bytes of relative-position bias built per band of query rows.
BIAS_BAND_BYTES = 96 << 20


def banded_attention(attn: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """SAM vision attention on (B, H, W, C) tokens (a batch of windows, or the whole image)."""
    batch, height, width, _ = hidden_states.shape
    heads = attn.num_attention_heads
    # (3, B, heads, H, W, d): views of the one qkv product, no copies.
    qkv = attn.qkv(hidden_states).unflatten(-1, (3, heads, -1)).permute(3, 0, 4, 1, 2, 5)
    query, key, value = qkv.unbind(0)
    key, value = key.flatten(2, 3), value.flatten(2, 3)
    out = hidden_states.new_empty(batch, height, width, heads, query.shape[-1])
    if attn.use_rel_pos:
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", query, attn.get_rel_pos(height, height, attn.rel_pos_h))
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", query, attn.get_rel_pos(width, width, attn.rel_pos_w))
        row_bytes = batch * heads * width * height * width * hidden_states.element_size()
        band = max(1, min(height, BIAS_BAND_BYTES // row_bytes))
        buffer = hidden_states.new_empty(batch, heads, band, width, height, width)
    else:
        band = height
    for top in range(0, height, band):
        rows = slice(top, min(top + band, height))
        n_rows = rows.stop - rows.start
        bias = None
        if attn.use_rel_pos:
            bias = buffer[:, :, :n_rows]
            torch.add(rel_h[:, :, rows, :, :, None], rel_w[:, :, rows, :, None, :], out=bias)
            bias = bias.flatten(2, 3).flatten(3, 4)
        mixed = F.scaled_dot_product_attention(
            query[:, :, rows].flatten(2, 3), key, value, attn_mask=bias, scale=attn.scale
        )  # (B, heads, rows*W, d)
        out[:, rows] = mixed.unflatten(2, (n_rows, width)).permute(0, 2, 3, 1, 4)
    return attn.proj(out.flatten(-2))


def _forward(attn: torch.nn.Module, hidden_states: torch.Tensor, output_attentions: bool = False):
    return banded_attention(attn, hidden_states), None


def prepare_vit_encoder(vision_encoder: torch.nn.Module) -> None:
    """Make every attention layer of a SAM / SAM-HQ ViT encoder use :func:`banded_attention`, and its
    token maps contiguous (see the module docstring)."""
    vision_encoder.patch_embed.projection.to(memory_format=torch.channels_last)
    for layer in vision_encoder.layers:
        layer.attn.forward = types.MethodType(_forward, layer.attn)
