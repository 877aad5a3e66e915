"""Propagation stacks: AOT's Long Short-Term Transformer and DeAOT's dual-branch gated
propagation module (visual branch + identity branch).

Memories per layer (lists so the engine can replace entries):
- AOT: ``[K, V]`` tokens ``(L, n, C)`` for the long-term memory and ``(n, C, h, w)`` maps for the
  short-term memory.
- DeAOT: ``[K, V | ID_V]`` in the same two layouts: the visual and identity values are kept
  concatenated (the official code stores them apart and concatenates them at every frame).
The current frame's entries (``[K, V]`` for AOT, ``[K, V, identity input]`` for DeAOT) become
memory through the block's ``remember`` once the frame's id embedding is known.
"""

from __future__ import annotations

import torch
from torch import nn

from samtrack.models.deaot.attention import (
    GatedPropagation,
    LocalGatedPropagation,
    MultiheadAttention,
    MultiheadLocalAttention,
)
from samtrack.models.deaot.layers import GNActDWConv2d, GroupNorm1D, seq_to_2d, silu

Memory = list  # one layer's memory entries, see the module docstring


class LSTTBlock(nn.Module):
    """AOT block: self-attention, long-term + short-term attention, feed-forward."""

    def __init__(self, d_model: int, self_nhead: int, att_nhead: int, dim_feedforward: int = 1024) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.linear_Q = nn.Linear(d_model, d_model)
        self.linear_V = nn.Linear(d_model, d_model)
        self.long_term_attn = MultiheadAttention(d_model, att_nhead, use_linear=False)
        self.short_term_attn = MultiheadLocalAttention(d_model, att_nhead)
        self.norm2 = nn.LayerNorm(d_model)
        self.self_attn = MultiheadAttention(d_model, self_nhead)
        self.norm3 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = GNActDWConv2d(dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)

    def fuse_key_value_id(self, key: torch.Tensor, value: torch.Tensor,
                          id_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory key/value of a frame whose objects are known: identities are added to V."""
        return key, self.linear_V(value + id_emb)

    def remember(self, curr: Memory, id_emb: torch.Tensor) -> Memory:
        """Long-term memory entries of the current frame once its id embedding is known."""
        return list(self.fuse_key_value_id(curr[0], curr[1], id_emb))

    def forward(self, tgt: torch.Tensor, long_term: Memory | None, short_term: Memory | None,
                curr_id_emb: torch.Tensor | None, self_pos: torch.Tensor,
                size_2d: tuple[int, int]) -> tuple[torch.Tensor, list[Memory]]:
        _tgt = self.norm1(tgt)
        qk = _tgt + self_pos
        tgt = tgt + self.self_attn(qk, qk, _tgt)

        _tgt = self.norm2(tgt)
        curr_q = self.linear_Q(_tgt)
        curr_k, curr_v = curr_q, _tgt
        local_q = seq_to_2d(curr_q, size_2d)
        if curr_id_emb is not None:
            global_k, global_v = self.fuse_key_value_id(curr_k, curr_v, curr_id_emb)
            local_k, local_v = seq_to_2d(global_k, size_2d), seq_to_2d(global_v, size_2d)
        else:
            global_k, global_v = long_term
            local_k, local_v = short_term
        tgt = tgt + (self.long_term_attn(curr_q, global_k, global_v)
                     + self.short_term_attn(local_q, local_k, local_v))

        _tgt = self.norm3(tgt)
        tgt = tgt + self.linear2(self.activation(self.linear1(_tgt), size_2d))
        return tgt, [[curr_k, curr_v], [global_k, global_v], [local_k, local_v]]


class LongShortTermTransformer(nn.Module):
    """AOT's LSTT: a stack of :class:`LSTTBlock` returning every layer's (normalised) output."""

    def __init__(self, num_layers: int, d_model: int, self_nhead: int, att_nhead: int,
                 intermediate_norm: bool) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.randn(1, 1, d_model))  # kept for checkpoint compatibility
        self.layers = nn.ModuleList(LSTTBlock(d_model, self_nhead, att_nhead) for _ in range(num_layers))
        num_norms = (num_layers - 1 if intermediate_norm else 0) + 1
        self.decoder_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(num_norms))
        self.intermediate_norm = intermediate_norm

    def forward(self, tgt: torch.Tensor, long_term: list[Memory] | None, short_term: list[Memory] | None,
                curr_id_emb: torch.Tensor | None, self_pos: torch.Tensor,
                size_2d: tuple[int, int]) -> tuple[list[torch.Tensor], list[list[Memory]]]:
        outputs, memories = [], []
        for idx, layer in enumerate(self.layers):
            tgt, mem = layer(tgt, None if long_term is None else long_term[idx],
                             None if short_term is None else short_term[idx], curr_id_emb, self_pos, size_2d)
            outputs.append(tgt)
            memories.append(mem)
        outputs[-1] = self.decoder_norms[-1](outputs[-1])
        if self.intermediate_norm:
            for idx in range(len(outputs) - 1):
                outputs[idx] = self.decoder_norms[idx](outputs[idx])
        return outputs, memories


class GatedPropagationModule(nn.Module):
    """DeAOT block: long/short-term gated propagation on both branches, then gated self-propagation."""

    def __init__(self, d_model: int, self_nhead: int, att_nhead: int, layer_idx: int,
                 max_local_dis: int = 7, expand_ratio: float = 2.0) -> None:
        super().__init__()
        expand_d_model = int(d_model * expand_ratio)
        self.expand_d_model = expand_d_model
        self.d_model = d_model
        self.d_att = d_model // 2 if att_nhead == 1 else d_model // att_nhead
        self.att_nhead = att_nhead
        self.layer_idx = layer_idx

        self.norm1 = nn.LayerNorm(d_model)
        self.linear_QV = nn.Linear(d_model, self.d_att * att_nhead + expand_d_model)
        self.linear_U = nn.Linear(d_model, expand_d_model)
        if layer_idx == 0:
            self.linear_ID_V = nn.Linear(d_model, expand_d_model)
        else:
            self.id_norm1 = nn.LayerNorm(d_model)
            self.linear_ID_V = nn.Linear(d_model * 2, expand_d_model)
            self.linear_ID_U = nn.Linear(d_model, expand_d_model)
        self.long_term_attn = GatedPropagation(d_model, d_model * 2, att_nhead, use_linear=False,
                                               d_att=self.d_att, expand_ratio=expand_ratio)
        self.short_term_attn = LocalGatedPropagation(d_model, d_model * 2, att_nhead, max_dis=max_local_dis,
                                                     d_att=self.d_att, expand_ratio=expand_ratio)
        self.norm2 = nn.LayerNorm(d_model)
        self.id_norm2 = nn.LayerNorm(d_model)
        self.self_attn = GatedPropagation(d_model * 2, d_model * 2, self_nhead, d_att=self.d_att)

    def fuse_key_value_id(self, id_value: torch.Tensor | None,
                          id_emb: torch.Tensor) -> torch.Tensor:
        """Identity value of a frame whose objects are known."""
        if id_value is None:
            return silu(self.linear_ID_V(id_emb))
        return silu(self.linear_ID_V(torch.cat([id_value, id_emb], dim=2)))

    def remember(self, curr: Memory, id_emb: torch.Tensor) -> Memory:
        """Long-term memory entries of the current frame once its id embedding is known."""
        key, value, id_value = curr
        return [key, torch.cat([value, self.fuse_key_value_id(id_value, id_emb)], dim=-1)]

    def forward(self, tgt: torch.Tensor, tgt_id: torch.Tensor | None, long_term: Memory | None,
                short_term: Memory | None, curr_id_emb: torch.Tensor | None,
                size_2d: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, list[Memory]]:
        _tgt = self.norm1(tgt)
        curr_q, curr_v = torch.split(self.linear_QV(_tgt), [self.d_att * self.att_nhead, self.expand_d_model],
                                     dim=2)
        curr_k = curr_q
        local_q = seq_to_2d(curr_q, size_2d)
        curr_v = silu(curr_v)
        curr_u = self.linear_U(_tgt)
        if tgt_id is None:
            cat_curr_u = torch.cat([silu(curr_u), torch.ones_like(curr_u)], dim=-1)
            curr_id_v = None
        else:
            curr_id_v = self.id_norm1(tgt_id)
            cat_curr_u = silu(torch.cat([curr_u, self.linear_ID_U(curr_id_v)], dim=-1))

        curr = [curr_k, curr_v, curr_id_v]
        if curr_id_emb is not None:
            global_k, cat_global_v = self.remember(curr, curr_id_emb)
            local_k, cat_local_v = seq_to_2d(global_k, size_2d), seq_to_2d(cat_global_v, size_2d)
        else:
            global_k, cat_global_v = long_term
            local_k, cat_local_v = short_term

        lt = self.long_term_attn(curr_q, global_k, cat_global_v, cat_curr_u, size_2d)
        st = self.short_term_attn(local_q, local_k, cat_local_v, cat_curr_u, size_2d)
        tgt2, tgt_id2 = torch.split(lt, self.d_model, dim=-1)
        tgt3, tgt_id3 = torch.split(st, self.d_model, dim=-1)
        tgt = tgt + (tgt2 + tgt3)
        tgt_id = (tgt_id2 + tgt_id3) if tgt_id is None else tgt_id + (tgt_id2 + tgt_id3)

        qkvu = torch.cat([self.norm2(tgt), self.id_norm2(tgt_id)], dim=-1)
        tgt2, tgt_id2 = torch.split(self.self_attn(qkvu, qkvu, qkvu, qkvu, size_2d), self.d_model, dim=-1)
        tgt = tgt + tgt2
        tgt_id = tgt_id + tgt_id2
        return tgt, tgt_id, [curr, [global_k, cat_global_v], [local_k, cat_local_v]]


class DualBranchGPM(nn.Module):
    """DeAOT's stack of :class:`GatedPropagationModule`; output is the GroupNorm'd concat of
    the last layer's visual and identity tokens."""

    def __init__(self, num_layers: int, d_model: int, self_nhead: int, att_nhead: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            GatedPropagationModule(d_model, self_nhead, att_nhead, layer_idx=i) for i in range(num_layers))
        self.decoder_norms = nn.ModuleList([GroupNorm1D(d_model * 2, groups=2)])

    def forward(self, tgt: torch.Tensor, long_term: list[Memory] | None, short_term: list[Memory] | None,
                curr_id_emb: torch.Tensor | None, self_pos: torch.Tensor | None,
                size_2d: tuple[int, int]) -> tuple[list[torch.Tensor], list[list[Memory]]]:
        tgt_id = None
        memories = []
        for idx, layer in enumerate(self.layers):
            tgt, tgt_id, mem = layer(tgt, tgt_id, None if long_term is None else long_term[idx],
                                     None if short_term is None else short_term[idx], curr_id_emb, size_2d)
            memories.append(mem)
        return [self.decoder_norms[-1](torch.cat([tgt, tgt_id], dim=2))], memories
