"""The CPU attention function that SAM 2.1 / EdgeTAM use: float32 is transformers' SDPA exactly, bf16 wide
heads go through blocked matrix products that compute the same attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from samtrack.models import attention


def _module() -> torch.nn.Module:
    module = torch.nn.Module()
    module.is_causal = False  # as SAM 2's attention modules
    return module


def _qkv(dtype: torch.dtype, heads: int, dim: int, queries: int = 300, keys: int = 700):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, heads, n, dim, generator=g).to(dtype) for n in (queries, keys, keys)]


def test_float32_is_transformers_sdpa_exactly():
    q, k, v = _qkv(torch.float32, 1, 128)
    module = _module()
    got, _ = attention.cpu_attention_forward(module, q, k, v, None, scaling=0.1)
    expected, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.1)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("heads,dim", [(1, 256), (2, 96)])
def test_bf16_blocks_compute_the_same_attention(monkeypatch, heads, dim):
    monkeypatch.setattr(attention, "has_amx", lambda: False)
    monkeypatch.setattr(attention, "SCORES_BLOCK_BYTES", 64 * 1024)  # several query blocks, a ragged last one
    calls = []
    blocked = attention.blocked_attention
    monkeypatch.setattr(attention, "blocked_attention", lambda *a: calls.append(1) or blocked(*a))
    q, k, v = _qkv(torch.bfloat16, heads, dim)
    got, _ = attention.cpu_attention_forward(_module(), q, k, v, None, scaling=dim**-0.5)
    assert calls
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).transpose(1, 2)
    assert got.dtype == torch.bfloat16 and got.shape == expected.shape
    torch.testing.assert_close(got.float(), expected, atol=0.02, rtol=0.02)


def test_amx_cpus_keep_the_fused_kernel(monkeypatch):
    """With AMX the fused kernel packs its products for the tiles: it keeps the attention."""
    monkeypatch.setattr(attention, "has_amx", lambda: True)
    q, k, v = _qkv(torch.bfloat16, 1, 256)
    module = _module()
    got, _ = attention.cpu_attention_forward(module, q, k, v, None)
    assert torch.equal(got, sdpa_attention_forward(module, q, k, v, None)[0])


def test_narrow_heads_and_masks_keep_sdpa():
    q, k, v = _qkv(torch.bfloat16, 4, 32)
    module = _module()
    got, _ = attention.cpu_attention_forward(module, q, k, v, None)
    assert torch.equal(got, sdpa_attention_forward(module, q, k, v, None)[0])
    q, k, v = _qkv(torch.bfloat16, 1, 256)
    mask = torch.zeros(2, 1, 300, 700, dtype=torch.bfloat16)
    got, _ = attention.cpu_attention_forward(module, q, k, v, mask)
    assert torch.equal(got, sdpa_attention_forward(module, q, k, v, mask)[0])
