"""Attention for transformers models on CPUs in bf16/fp16: query blocks through matrix products.

PyTorch's fused CPU attention (the flash kernel behind ``scaled_dot_product_attention``) runs its
bf16 products at the fp32 rate on CPUs without AMX: SAM 2.1 / EdgeTAM's memory attention (one head
of 256 channels, 4096 queries against 4096-28,000 memory tokens) ran at 94 GFLOP/s in bf16 and 91 in
fp32 on the 2-core AVX512-BF16 development host (one thread, 2048² products at 208 / 91 GFLOP/s).
Written as matrix products over blocks of queries, the same attention runs at 120-160 GFLOP/s in
bf16: the products reach oneDNN's bf16 kernels and only the softmax is left between them. Narrow heads gain less (96 channels: 1.23×, 64: none) and
very narrow ones lose (32: 0.85×), so heads under :data:`MIN_HEAD_DIM` channels, float32 (where
the fused kernel is as fast and exact results matter), masks, dropout and other devices keep
transformers' SDPA path. So do CPUs with AMX: there the fused kernel packs its blocks for AMX tiles
(``cpublas::could_pack``), which this cannot do; that case could not be measured here.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.utils import logging

from samtrack.models.common import has_amx

NAME = "samtrack_cpu"
# Heads at least this wide go through blocked matrix products in bf16 / fp16 on a CPU.
MIN_HEAD_DIM = 96
# Bytes of attention scores computed per block of queries. Blocks of 8 and 32 MB run equally fast on
# one thread (2 MB blocks: 1.55x slower), but with two threads on a busy machine every block's
# products and softmax wait for the slower thread, and 8 MB blocks lost to SDPA (0.85x) where
# 32 MB ones still won (1.25x).
SCORES_BLOCK_BYTES = 32 << 20


def blocked_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale · Q Kᵀ) V for (B, heads, L, d) tensors, block of queries by block of queries."""
    batch, heads, length, _ = query.shape
    rows = max(128, SCORES_BLOCK_BYTES // (query.element_size() * batch * heads * key.shape[-2]))
    out = query.new_empty(batch, heads, length, value.shape[-1])
    keys = key.transpose(-1, -2).contiguous()  # once, not a copy per block
    for start in range(0, length, rows):
        block = slice(start, start + rows)
        scores = torch.matmul(query[:, :, block], keys).mul_(scale)
        torch.matmul(torch.softmax(scores, -1), value, out=out[:, :, block])
    return out


def cpu_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention function: :func:`blocked_attention` where it is faster (see the module
    docstring), transformers' SDPA otherwise. Returns (B, L, heads, d) like SDPA's."""
    blocked = (query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16) and not has_amx()
               and query.shape[-1] >= MIN_HEAD_DIM and attention_mask is None and not dropout and not is_causal
               and getattr(module, "num_key_value_groups", 1) == 1 and kwargs.get("position_bias") is None)
    if not blocked:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    return blocked_attention(query, key, value, scale).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, cpu_attention_forward)


def use_cpu_attention(model: torch.nn.Module) -> None:
    """Route a transformers model's attention (every sub-model) through :func:`cpu_attention_forward`."""
    if model.config._attn_implementation == NAME:
        return
    # transformers warns about sub-configs without attention modules (SAM 2's prompt encoder): harmless here.
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        model.set_attn_implementation(NAME)
    finally:
        logging.set_verbosity(verbosity)
