"""Attention modules of AOT (multi-head / local attention) and DeAOT (gated propagation).

Local (short-term) attention attends, for every query position, to the 15 x 15 window of key
positions around it (``max_dis = 7``), positions outside the map being masked out. The
official code materialises either an unfolded key tensor or a dense ``hw x hw`` attention map;
here each window row is handled as a banded batched matrix product, which computes the same
sums with far less memory traffic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samtrack.models.deaot.layers import DWConv2d, silu

_MASK_VALUE = 1e8  # what the official code subtracts from logits of out-of-map window positions


def _band_view(full: torch.Tensor, width: int, window: int) -> torch.Tensor:
    """View ``(B, width, width + window - 1)`` as ``(B, width, window)``: ``out[b, x, d] = full[b, x, x + d]``."""
    b, _, padded = full.shape
    return full.as_strided((b, width, window), (width * padded, padded + 1, 1), full.storage_offset())


def local_logits(q: torch.Tensor, k: torch.Tensor, max_dis: int) -> torch.Tensor:
    """Dot products of every query with the keys in its window.

    q, k: ``(B, d, h, w)`` (q already scaled). Returns ``(B, window*window, h*w)`` where window
    index ``dy * window + dx`` is the key at offset ``(dy - max_dis, dx - max_dis)``, the unfold
    order of the official code; keys outside the map count as zero vectors.

    The padded keys are laid out ``(row, B, d, column)`` once, so that the key rows of every window
    row ``dy`` are one contiguous slice (no copy per ``dy``).
    """
    b, d, h, w = q.shape
    win = 2 * max_dis + 1
    padded = w + win - 1
    kp = nn.functional.pad(k, (max_dis, max_dis, max_dis, max_dis)).permute(2, 0, 1, 3).contiguous()
    q_rows = q.permute(2, 0, 3, 1).reshape(h * b, w, d)
    out = q.new_empty(b, win, win, h, w)
    for dy in range(win):
        band = _band_view(torch.bmm(q_rows, kp[dy:dy + h].view(h * b, d, padded)), w, win)  # (h*B, w, win)
        out[:, dy] = band.view(h, b, w, win).permute(1, 3, 0, 2)
    return out.view(b, win * win, h * w)


def local_aggregate(attn: torch.Tensor, v: torch.Tensor, h: int, w: int, max_dis: int,
                    tile: int | None = 8) -> torch.Tensor:
    """Weighted sum of the values in each query's window.

    attn: ``(B, window*window, h*w)``; v: ``(B, C, h, w)``. Returns tokens ``(h*w, B, C)``.

    For one window row ``dy``, the queries of a map row read ``w + window - 1`` consecutive padded
    keys through banded weights: a batched matrix product per ``dy``.

    In float32 each map row is cut into tiles of ``tile`` queries; a tile needs only
    ``tile + window - 1`` consecutive keys, so the banded weights are ``tile x (tile + 14)``
    instead of ``w x (w + 14)`` (R50-DeAOT-L at 480p: 30 -> 26 ms per call). The padded values
    are laid out ``(row, B, P, C)`` with ``P`` a multiple of ``tile``: then every tile's keys
    are one strided window of the same buffer, read in place. Tiles past the row end hold zero
    weights; the last ones read into the next row (or the spare zero row at the end).

    Those windows overlap, which BLAS takes in float32 but oneDNN's bf16/fp16 products do not: they
    copy every overlapping operand first (2.75x the values per ``dy``). Other dtypes on a CPU
    therefore take whole rows (``tile=None``, the default for them): each row's band reads its own
    ``w + 14`` keys, which do not overlap the next row's (R50-DeAOT-L's 1024 channels, bf16, one
    thread: 71 -> 34 ms per call). GPUs keep the tiles (not measured here).
    """
    if tile is None or (v.dtype != torch.float32 and v.device.type == "cpu"):
        return _row_aggregate(attn, v, h, w, max_dis)
    b, c = v.shape[:2]
    win = 2 * max_dis + 1
    keys = tile + win - 1
    tiles = -(-(w + win - 1) // tile)
    pw = tiles * tile
    vp = v.new_zeros(h + win, b, pw, c)  # one spare row for the last tiles' overreach
    vp[max_dis:max_dis + h, :, max_dis:max_dis + w].copy_(v.permute(2, 0, 3, 1))
    weights = attn.new_zeros(win, h, b, pw, win)  # (dy, row, B, query x, dx), zero past the row end
    weights[:, :, :, :w].copy_(attn.view(b, win, win, h, w).permute(1, 3, 0, 4, 2))
    batch = h * b * tiles
    band = attn.new_zeros(batch, tile, keys)
    diagonals = band.as_strided((batch, tile, win), (tile * keys, keys + 1, 1))
    out = None
    for dy in range(win):
        diagonals.copy_(weights[dy].view(batch, tile, win))
        values = vp.as_strided((batch, keys, c), (tile * c, c, 1), vp.storage_offset() + dy * b * pw * c)
        out = torch.bmm(band, values) if out is None else out.baddbmm_(band, values)
    return out.view(h, b, pw, c)[:, :, :w].permute(0, 2, 1, 3).reshape(h * w, b, c)


def _row_aggregate(attn: torch.Tensor, v: torch.Tensor, h: int, w: int, max_dis: int) -> torch.Tensor:
    """:func:`local_aggregate` by whole map rows: per ``dy``, ``(h*B, w, w+14)`` banded weights times
    the ``(h*B, w+14, C)`` padded value rows, a contiguous slice of one buffer."""
    b, c = v.shape[:2]
    win = 2 * max_dis + 1
    padded = w + win - 1
    vp = v.new_zeros(h + win - 1, b, padded, c)
    vp[max_dis:max_dis + h, :, max_dis:max_dis + w].copy_(v.permute(2, 0, 3, 1))
    weights = attn.to(v.dtype).view(b, win, win, h, w).permute(1, 3, 0, 4, 2)  # (dy, row, B, query x, dx)
    band = v.new_zeros(h * b, w, padded)
    diagonals = band.as_strided((h * b, w, win), (w * padded, padded + 1, 1))
    out = None
    for dy in range(win):
        diagonals.copy_(weights[dy].reshape(h * b, w, win))
        values = vp[dy:dy + h].view(h * b, padded, c)
        out = torch.bmm(band, values) if out is None else out.baddbmm_(band, values)
    return out.view(h, b, w, c).permute(0, 2, 1, 3).reshape(h * w, b, c)


def local_softmax(qk: torch.Tensor, h: int, w: int, max_dis: int) -> torch.Tensor:
    """Softmax over the window after masking the positions that fall outside the map."""
    win = 2 * max_dis + 1
    ys = torch.arange(h, device=qk.device).view(1, h, 1) + torch.arange(win, device=qk.device).view(win, 1, 1)
    xs = torch.arange(w, device=qk.device).view(1, w) + torch.arange(win, device=qk.device).view(win, 1)
    inside_y = (ys >= max_dis) & (ys < h + max_dis)  # (win, h, 1)
    inside_x = (xs >= max_dis) & (xs < w + max_dis)  # (win, w)
    outside = ~(inside_y.view(win, 1, h, 1) & inside_x.view(1, win, 1, w))
    qk = qk - outside.view(1, win * win, h * w).to(qk.dtype) * _MASK_VALUE
    return torch.softmax(qk, dim=1)


def global_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_head: int,
                     scale: float) -> torch.Tensor:
    """Softmax attention of token sequences ``(L, n, heads * d)``; returns ``(Lq, n, heads, d_v)``.

    The official code divides Q by ``scale`` and materialises the ``Lq x Lk`` weights. Where Q and
    V have the same head size (AOT) the fused kernel gives the same result (to float rounding)
    without them, which matters for long long-term memories. DeAOT's values are wider than its
    queries, which the fused kernel does not take; its fallback would materialise the weights as
    well and add NaN guards on them, so the product is written out (R50-DeAOT-L: 12 ms less per
    frame on a 2-core CPU).
    """
    lq, n = q.shape[:2]
    q = q.view(lq, n, num_head, -1).permute(1, 2, 0, 3)
    k = k.view(k.shape[0], n, num_head, -1).permute(1, 2, 0, 3)
    v = v.view(v.shape[0], n, num_head, -1).permute(1, 2, 0, 3)
    if q.shape[-1] == v.shape[-1]:
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / scale)
    else:
        out = torch.matmul(q / scale, k.transpose(-1, -2)).softmax(dim=-1) @ v
    return out.permute(2, 0, 1, 3)


class MultiheadAttention(nn.Module):
    """AOT global multi-head attention (optionally with input projections)."""

    def __init__(self, d_model: int, num_head: int, use_linear: bool = True) -> None:
        super().__init__()
        self.d_model = d_model
        self.num_head = num_head
        self.d_att = d_model // num_head
        self.scale = self.d_att ** 0.5
        self.use_linear = use_linear
        if use_linear:
            self.linear_Q = nn.Linear(d_model, d_model)
            self.linear_K = nn.Linear(d_model, d_model)
            self.linear_V = nn.Linear(d_model, d_model)
        self.projection = nn.Linear(d_model, d_model)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        bs = q.shape[1]
        if self.use_linear:
            q, k, v = self.linear_Q(q), self.linear_K(k), self.linear_V(v)
        out = global_attention(q, k, v, self.num_head, self.scale)
        return self.projection(out.reshape(-1, bs, self.d_model))


class MultiheadLocalAttention(nn.Module):
    """AOT short-term attention: multi-head attention inside a 15 x 15 window, with relative
    position terms on the keys (``relative_emb_k``) and on the values (``relative_emb_v``)."""

    def __init__(self, d_model: int, num_head: int, max_dis: int = 7) -> None:
        super().__init__()
        self.max_dis = max_dis
        self.window = 2 * max_dis + 1
        self.num_head = num_head
        self.hidden = d_model // num_head
        self.scale = self.hidden ** 0.5
        self.relative_emb_k = nn.Conv2d(d_model, num_head * self.window ** 2, kernel_size=1, groups=num_head)
        self.relative_emb_v = nn.Parameter(torch.zeros(num_head, self.hidden, self.window ** 2))
        self.projection = nn.Linear(d_model, d_model)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        n, c, h, w = q.shape
        heads, win2 = self.num_head, self.window ** 2
        rel = self.relative_emb_k(q).reshape(n * heads, win2, h * w)
        q = (q / self.scale).reshape(n * heads, self.hidden, h, w)
        qk = local_logits(q, k.reshape(n * heads, self.hidden, h, w), self.max_dis) + rel
        attn = local_softmax(qk, h, w, self.max_dis)  # (n*heads, win2, hw)
        out = local_aggregate(attn, v.reshape(n * heads, self.hidden, h, w), h, w, self.max_dis)
        bias = torch.einsum("bwp,bcw->pbc", attn, self.relative_emb_v.repeat(n, 1, 1))
        return self.projection((out + bias).view(h * w, n, c))


class GatedPropagation(nn.Module):
    """DeAOT global gated propagation: softmax attention whose output is gated by ``U``, then a
    depthwise conv and a projection. With ``use_linear`` the values and gates are projected
    per branch (visual / identity halves) first, as in the self-propagation."""

    def __init__(self, d_qk: int, d_vu: int, num_head: int = 8, use_linear: bool = True,
                 d_att: int | None = None, expand_ratio: float = 2.0) -> None:
        super().__init__()
        self.expand_d_vu = int(d_vu * expand_ratio)
        self.d_vu = d_vu
        self.num_head = num_head
        self.hidden = self.expand_d_vu // num_head
        self.d_att = d_qk // num_head if d_att is None else d_att
        self.scale = self.d_att ** 0.5
        self.use_linear = use_linear
        if use_linear:
            half = self.hidden * num_head // 2
            self.linear_QK = nn.Linear(d_qk, self.d_att * num_head)
            self.linear_V1 = nn.Linear(d_vu // 2, half)
            self.linear_V2 = nn.Linear(d_vu // 2, half)
            self.linear_U1 = nn.Linear(d_vu // 2, half)
            self.linear_U2 = nn.Linear(d_vu // 2, half)
        self.dw_conv = DWConv2d(self.expand_d_vu)
        self.projection = nn.Linear(self.expand_d_vu, d_vu)

    def _cat_heads(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if self.num_head == 1:
            return torch.cat([x1, x2], dim=-1)
        bs = x1.shape[1]
        x1 = x1.view(-1, bs, self.num_head, self.hidden // 2)
        x2 = x2.view(-1, bs, self.num_head, self.hidden // 2)
        return torch.cat([x1, x2], dim=-1).view(-1, bs, self.num_head * self.hidden)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, u: torch.Tensor,
                size_2d: tuple[int, int]) -> torch.Tensor:
        length, bs, _ = q.shape
        if self.use_linear:
            q = k = self.linear_QK(q)
            v1, v2 = torch.split(v, self.d_vu // 2, dim=-1)
            v = silu(self._cat_heads(self.linear_V1(v1), self.linear_V2(v2)))
            u1, u2 = torch.split(u, self.d_vu // 2, dim=-1)
            u = silu(self._cat_heads(self.linear_U1(u1), self.linear_U2(u2)))
        out = global_attention(q, k, v, self.num_head, self.scale).reshape(length, bs, -1) * u
        return self.projection(self.dw_conv(out, size_2d))


class LocalGatedPropagation(nn.Module):
    """DeAOT short-term gated propagation inside a 15 x 15 window (no input projections)."""

    def __init__(self, d_qk: int, d_vu: int, num_head: int, max_dis: int = 7, d_att: int | None = None,
                 expand_ratio: float = 2.0) -> None:
        super().__init__()
        self.expand_d_vu = int(d_vu * expand_ratio)
        self.max_dis = max_dis
        self.window = 2 * max_dis + 1
        self.num_head = num_head
        self.hidden = self.expand_d_vu // num_head
        self.d_att = d_qk // num_head if d_att is None else d_att
        self.scale = self.d_att ** 0.5
        self.relative_emb_k = nn.Conv2d(self.d_att * num_head, num_head * self.window ** 2, kernel_size=1,
                                        groups=num_head)
        self.dw_conv = DWConv2d(self.expand_d_vu)
        self.projection = nn.Linear(self.expand_d_vu, d_vu)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, u: torch.Tensor,
                size_2d: tuple[int, int]) -> torch.Tensor:
        n, _, h, w = v.shape
        heads = self.num_head
        rel = self.relative_emb_k(q).reshape(n * heads, self.window ** 2, h * w)
        q = (q / self.scale).reshape(n * heads, self.d_att, h, w)
        qk = local_logits(q, k.reshape(n * heads, self.d_att, h, w), self.max_dis) + rel
        attn = local_softmax(qk, h, w, self.max_dis)
        out = local_aggregate(attn, v.reshape(n * heads, self.hidden, h, w), h, w, self.max_dis)
        out = out.view(h * w, n, -1) * u
        return self.projection(self.dw_conv(out, size_2d))
