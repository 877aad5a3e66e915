"""Swin Transformer-B image encoder of SwinB-DeAOT-L and SwinB-AOT-L.

Re-implements the backbone the official AOT code builds for ``MODEL_ENCODER = 'swin_base'``
(yoxu515/aot-benchmark, ``networks/encoders/swin``) so that the released checkpoints load
unchanged and give the same features:

- patch embedding: 4x4 conv with stride 4 (input padded right/bottom to a multiple of 4),
  then LayerNorm;
- embed dim 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32), window 7, MLP ratio 4, no
  absolute position embedding;
- only the first three stages are built (the fourth is dropped), patch merging after stages
  0 and 1, a LayerNorm on each output (``norm0``, ``norm1``, ``norm2``);
- ``forward`` returns ``[s4, s8, s16, s16]`` (the stride-16 map twice, as the official code
  appends its last output again so that the list has the length the decoder expects);
- feature maps whose sides are not multiples of the window are zero-padded right/bottom
  after ``norm1`` of every block, attention runs over the padded windows (padded tokens are
  not masked, as in the official code) and the result is cropped;
- shifted windows (every odd block) roll by 3 and add the official -100 mask between tokens
  from different regions;
- stochastic depth (rate 0.3 over all 24 blocks, the dropped stage included) only acts in
  training mode; ``frozen_stages=2`` (the official ``TRAIN_ENCODER_FREEZE_AT``) freezes the
  patch embedding and stage 0 but not stage 0's patch merging, and removes stage 0's drop path.

Window attention uses :func:`torch.nn.functional.scaled_dot_product_attention` with the
relative position bias (plus the shift mask) as an additive float mask. The pad / roll /
window-partition copies of the official code (and their inverses) are replaced by one index
gather before and one after the attention, and the qkv and output projections run on the real
tokens only (a zero-padded token projects to exactly the qkv bias); the numbers are the
official ones up to float rounding (tests compare with a step-by-step official-style forward).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SwinB",
    "relative_position_index",
    "shifted_window_mask",
    "window_partition",
    "window_reverse",
]

# Value the official code adds between tokens of different regions in a shifted window.
SHIFT_MASK_VALUE = -100.0


def relative_position_index(window_size: int) -> Tensor:
    """Index into the relative position bias table for every token pair of a window.

    Tokens are numbered row-major inside a ``window_size`` x ``window_size`` window; the entry
    for (query i, key j) is ``(dy + ws - 1) * (2 * ws - 1) + (dx + ws - 1)`` with
    ``dy = y_i - y_j`` and ``dx = x_i - x_j``.

    Returns:
        int64 tensor of shape ``(ws * ws, ws * ws)``.
    """
    ws = window_size
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + (ws - 1)
    dx = xs[:, None] - xs[None, :] + (ws - 1)
    return (dy * (2 * ws - 1) + dx).to(torch.int64)


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """Split ``(B, H, W, C)`` into windows ``(B * nW, ws * ws, C)``, batch-major, row-major windows.

    ``H`` and ``W`` must be multiples of ``window_size``.
    """
    b, h, w, c = x.shape
    ws = window_size
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * (h // ws) * (w // ws), ws * ws, c)


def window_reverse(windows: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, ws * ws, C)`` back to ``(B, H, W, C)``."""
    ws = window_size
    nh, nw = height // ws, width // ws
    c = windows.shape[-1]
    b = windows.shape[0] // (nh * nw)
    x = windows.view(b, nh, nw, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, height, width, c)


def shifted_window_mask(
    height: int,
    width: int,
    window_size: int,
    shift_size: int,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Additive attention mask of the shifted windows on a padded ``height`` x ``width`` map.

    After the cyclic shift by ``-shift_size`` the padded map is cut into three bands per axis:
    ``[0, H - ws)``, ``[H - ws, H - shift)`` and ``[H - shift, H)`` (same for the width); two
    tokens of one window may attend to each other only if they lie in the same band pair.
    ``height`` and ``width`` must be multiples of ``window_size``.

    Returns:
        ``(nW, ws * ws, ws * ws)`` tensor, 0 where allowed and -100 elsewhere (the official value).
    """

    def bands(n: int) -> Tensor:
        idx = torch.arange(n, device=device)
        # Band 0 below n - ws, band 1 up to n - shift, band 2 after.
        return (idx >= n - window_size).long() + (idx >= n - shift_size).long()

    region = bands(height)[:, None] * 3 + bands(width)[None, :]
    windows = window_partition(region[None, :, :, None], window_size).squeeze(-1)  # nW, N
    differs = windows[:, None, :] != windows[:, :, None]
    mask = torch.zeros(differs.shape, device=device, dtype=dtype)
    return mask.masked_fill_(differs, SHIFT_MASK_VALUE)


class DropPath(nn.Module):
    """Stochastic depth per sample (batch dimension 0); identity in eval mode or at rate 0."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        """Zero whole samples with probability ``drop_prob`` and rescale the others (training only)."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        noise = torch.rand(shape, dtype=x.dtype, device=x.device).add_(keep).floor_()
        return x.div(keep) * noise

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}"


class Mlp(nn.Module):
    """Two linear layers with exact GELU in between (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., dim) -> (..., dim)``."""
        return self.fc2(self.act(self.fc1(x)))


class WindowGeometry:
    """Token index maps of one stage's (shifted) windows, computed once per stage and forward.

    Tokens of a stage live as a flat ``(B * H * W, C)`` array (row-major per image). For the
    window layout ``(B * nW, ws * ws, ...)`` of the official code (map zero-padded right/bottom
    to multiples of ``ws``, rolled by ``-shift`` for shifted blocks, then cut into row-major
    windows), ``gather[s]`` gives, for every window slot, the flat token it reads, or
    ``B * H * W`` (one extra row appended by the caller) for a padded position; ``scatter[s]``
    gives, for every real token, its slot in the window layout. One gather replaces the
    official pad + roll + partition copies and one gather the reverse + roll + crop copies.
    """

    def __init__(
        self, batch: int, height: int, width: int, window_size: int, shift_size: int, device: torch.device
    ) -> None:
        ws = window_size
        self.batch, self.height, self.width = batch, height, width
        self.padded_height = -(-height // ws) * ws
        self.padded_width = -(-width // ws) * ws
        self.num_windows = (self.padded_height // ws) * (self.padded_width // ws)
        self.gather: dict[int, Tensor] = {}
        self.scatter: dict[int, Tensor] = {}
        for shift in {0, shift_size}:
            self.gather[shift], self.scatter[shift] = self._indices(ws, shift, device)
        self.shift_mask = (
            shifted_window_mask(self.padded_height, self.padded_width, ws, shift_size, device=device)
            if shift_size
            else None
        )

    def _indices(self, ws: int, shift: int, device: torch.device) -> tuple[Tensor, Tensor]:
        h, w, hp, wp = self.height, self.width, self.padded_height, self.padded_width
        tokens = h * w
        # Window layout position (r, c) of the rolled padded map reads padded position
        # ((r + shift) % hp, (c + shift) % wp).
        rows = (torch.arange(hp, device=device) + shift) % hp
        cols = (torch.arange(wp, device=device) + shift) % wp
        src = rows[:, None] * w + cols[None, :]
        src = src.masked_fill((rows[:, None] >= h) | (cols[None, :] >= w), -1)
        slots = window_partition(src[None, :, :, None], ws).reshape(-1)  # nW * N
        # Real token (y, x) sits at rolled position ((y - shift) % hp, (x - shift) % wp).
        r = (torch.arange(h, device=device) - shift) % hp
        c = (torch.arange(w, device=device) - shift) % wp
        win = (r[:, None] // ws) * (wp // ws) + (c[None, :] // ws)
        slot_of_token = (win * (ws * ws) + (r[:, None] % ws) * ws + (c[None, :] % ws)).reshape(-1)
        per_image = slots.numel()
        offsets = torch.arange(self.batch, device=device)[:, None]
        gather = torch.where(slots >= 0, slots + offsets * tokens, self.batch * tokens)
        scatter = slot_of_token + offsets * per_image
        return gather.reshape(-1), scatter.reshape(-1)


class WindowAttention(nn.Module):
    """Multi-head self attention inside windows with a learned relative position bias.

    State: ``relative_position_bias_table`` ``((2ws-1)^2, heads)`` parameter,
    ``relative_position_index`` ``(ws^2, ws^2)`` int64 buffer, ``qkv`` and ``proj`` linears.
    """

    relative_position_index: Tensor

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02, a=-0.04, b=0.04)

    def relative_position_bias(self) -> Tensor:
        """The bias added to the attention logits, ``(heads, ws^2, ws^2)``."""
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def attention_mask(self, shift_mask: Tensor | None, batch: int, dtype: torch.dtype) -> Tensor:
        """Additive float mask for SDPA: bias ``(1, h, N, N)`` or bias + shift ``(B*nW, h, N, N)``."""
        bias = self.relative_position_bias().to(dtype)
        if shift_mask is None:
            return bias.unsqueeze(0)
        combined = bias.unsqueeze(0) + shift_mask.to(dtype).unsqueeze(1)  # nW, h, N, N
        if batch == 1:
            return combined
        return combined.unsqueeze(0).expand(batch, *combined.shape).flatten(0, 1)

    def attend(self, qkv: Tensor, shift_mask: Tensor | None = None, batch: int = 1) -> Tensor:
        """Attention of projected windows, before the output projection.

        Args:
            qkv: ``(batch * nW, N, 3C)`` output of ``self.qkv`` on window tokens, batch-major.
            shift_mask: ``(nW, N, N)`` additive mask of shifted windows, or None.
            batch: number of images the windows come from.

        Returns:
            ``(batch * nW, N, C)``.
        """
        bw, n, c3 = qkv.shape
        c = c3 // 3
        q, k, v = qkv.view(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        mask = self.attention_mask(shift_mask, batch, q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return out.transpose(1, 2).reshape(bw, n, c)

    def forward(self, x: Tensor, shift_mask: Tensor | None = None, batch: int = 1) -> Tensor:
        """Attend within each window: ``(batch * nW, N, C) -> (batch * nW, N, C)``."""
        return self.proj(self.attend(self.qkv(x), shift_mask, batch))


class SwinTransformerBlock(nn.Module):
    """Pre-norm (shifted-)window attention block followed by a pre-norm MLP, both residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError("shift_size must be in [0, window_size)")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.drop_path: nn.Module = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, geometry: WindowGeometry) -> Tensor:
        """``(B * H * W, C) -> (B * H * W, C)`` flat tokens of the stage described by ``geometry``."""
        attn = self.attn
        ws = self.window_size
        # qkv is a per-token linear map, so it runs on the real tokens only; a zero-padded
        # token of the official code projects to exactly the qkv bias, appended as one row.
        qkv = attn.qkv(self.norm1(x))
        pad_row = attn.qkv.bias if attn.qkv.bias is not None else qkv.new_zeros(qkv.shape[-1])
        qkv = torch.cat([qkv, pad_row.to(qkv.dtype).unsqueeze(0)])
        windows = qkv.index_select(0, geometry.gather[self.shift_size])
        windows = windows.view(geometry.batch * geometry.num_windows, ws * ws, -1)
        shift_mask = geometry.shift_mask if self.shift_size else None
        y = attn.attend(windows, shift_mask, geometry.batch)
        # Back to real tokens only (padded outputs are cropped by the official code), then proj.
        y = attn.proj(y.view(-1, y.shape[-1]).index_select(0, geometry.scatter[self.shift_size]))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Halve the resolution: concatenate 2x2 neighbours (odd sides zero-padded), LayerNorm, project."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C)``."""
        h, w = x.shape[1], x.shape[2]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Channel order of the official code: (even row, even col), (odd, even), (even, odd), (odd, odd).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One stage: ``depth`` blocks alternating plain and shifted windows, then optional merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        drop_path: Sequence[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim,
                num_heads,
                window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path[i],
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None
        # Index maps of the last input size (video frames share one size); not module state.
        self._geometry: tuple[tuple[int, int, int, torch.device], WindowGeometry] | None = None

    def geometry(self, batch: int, height: int, width: int, device: torch.device) -> WindowGeometry:
        """Window index maps for this input size, reused while the size stays the same."""
        key = (batch, height, width, device)
        if self._geometry is None or self._geometry[0] != key:
            # Normal tensors even under inference_mode, so a later autograd forward may reuse them.
            with torch.inference_mode(False):
                geometry = WindowGeometry(batch, height, width, self.window_size, self.shift_size, device)
            self._geometry = (key, geometry)
        return self._geometry[1]

    def forward(self, x: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Run the stage on flat tokens ``(B * H * W, C)`` of ``height`` x ``width`` maps.

        Returns:
            (stage output ``(B, H, W, C)``, input of the next stage ``(B, H', W', C')``).
        """
        batch = x.shape[0] // (height * width)
        geometry = self.geometry(batch, height, width, x.device)
        for blk in self.blocks:
            x = blk(x, geometry)
        x = x.view(batch, height, width, -1)
        down = self.downsample(x) if self.downsample is not None else x
        return x, down


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` conv embedding (input padded to a multiple) plus LayerNorm."""

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 128) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W) -> (B, ceil(H/p), ceil(W/p), C)`` channels-last tokens."""
        p = self.patch_size
        h, w = x.shape[-2:]
        if h % p or w % p:
            x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.proj(x).permute(0, 2, 3, 1)
        return self.norm(x)


class SwinB(nn.Module):
    """Swin-B backbone as the official AOT/DeAOT code builds it for ``swin_base``.

    The defaults are the official configuration; smaller values only serve tests. ``depths`` and
    ``num_heads`` list all four Swin stages, but, as in the official code, only the first
    ``len(depths) - 1`` are built (the stochastic depth schedule still spans all four).

    ``state_dict()`` keys, shapes and dtypes equal the ``encoder.*`` entries of the official
    SwinB-DeAOT-L / SwinB-AOT-L models (324 entries, including the int64
    ``relative_position_index`` buffers).

    Input ``(B, 3, H, W)`` float; output ``[f4, f8, f16, f16]`` with channels 128, 256, 512, 512
    at strides 4, 8, 16, 16 (sides ``ceil``-divided). For a 1x3x480x848 input:
    ``[1x128x120x212, 1x256x60x106, 1x512x30x53, 1x512x30x53]``; the last two entries are the
    same tensor.
    """

    def __init__(
        self,
        embed_dim: int = 128,
        depths: Sequence[int] = (2, 2, 18, 2),
        num_heads: Sequence[int] = (4, 8, 16, 32),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.3,
        patch_size: int = 4,
        in_chans: int = 3,
        out_indices: Sequence[int] = (0, 1, 2),
        frozen_stages: int = 2,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads) or len(depths) < 2:
            raise ValueError("depths and num_heads must list the same number (>= 2) of stages")
        self.num_layers = len(depths) - 1  # the official code drops the last stage
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.num_features = [embed_dim * 2**i for i in range(self.num_layers)]
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)

        total = sum(depths)
        dpr = [drop_path_rate * i / (total - 1) for i in range(total)] if total > 1 else [0.0]
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            start = sum(depths[:i])
            rates = dpr[start : start + depths[i]]
            if frozen_stages >= 2 and i < frozen_stages - 1:
                rates = [0.0] * depths[i]  # the official freezing replaces these drop paths
            self.layers.append(
                BasicLayer(
                    dim=self.num_features[i],
                    depth=depths[i],
                    num_heads=num_heads[i],
                    window_size=window_size,
                    mlp_ratio=mlp_ratio,
                    drop_path=rates,
                    downsample=i < self.num_layers - 1,
                )
            )
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        """Set ``requires_grad`` the way the official ``_freeze_stages`` leaves it."""
        if self.frozen_stages >= 0:
            self.patch_embed.requires_grad_(False)
        if self.frozen_stages >= 2:
            last = None
            for i in range(self.frozen_stages - 1):
                last = self.layers[i]
                last.requires_grad_(False)
            # The official loop leaves the patch merging of the last frozen stage trainable.
            if last is not None and last.downsample is not None:
                last.downsample.requires_grad_(True)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Encode ``(B, 3, H, W)`` images into ``[f4, f8, f16, f16]`` NCHW feature maps."""
        if x.ndim != 4 or x.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(
                f"SwinB expects a (B, {self.patch_embed.proj.in_channels}, H, W) image batch, "
                f"got shape {tuple(x.shape)}"
            )
        x = self.patch_embed(x)
        outs: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            b, h, w, c = x.shape
            out, x = layer(x.reshape(b * h * w, c), h, w)
            if i in self.out_indices:
                out = getattr(self, f"norm{i}")(out)
                outs.append(out.permute(0, 3, 1, 2).contiguous())
        outs.append(outs[-1])
        return outs
