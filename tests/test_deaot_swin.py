"""Swin-B encoder of SwinB-DeAOT-L / SwinB-AOT-L: official keys, official numerics, odd sizes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from samtrack.models.deaot.swin import (
    SwinB,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "deaot"


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids OpenMP spin-waits on a busy shared CPU (100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**kwargs: object) -> SwinB:
    """A small Swin with the official structure (3 of 4 stages built, merging, output norms)."""
    cfg: dict[str, object] = {"embed_dim": 16, "depths": (2, 2, 4, 2), "num_heads": (1, 2, 4, 8)}
    cfg.update(kwargs)
    return SwinB(**cfg).eval()  # type: ignore[arg-type]


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Give every floating parameter random values of a realistic scale (LayerNorm gains ~1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.split(".")[-2].startswith("norm"):
                p.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            elif "relative_position_bias_table" in name:
                p.copy_(noise)
            else:
                p.copy_(noise / max(p.shape[-1], 1) ** 0.5)


@pytest.fixture(scope="module")
def swinb() -> SwinB:
    torch.manual_seed(0)
    return SwinB().eval()


# ----------------------------------------------------------------------------- keys


@pytest.mark.parametrize("variant", ["swinb_deaotl", "swinb_aotl"])
def test_state_dict_matches_official_manifest(swinb: SwinB, variant: str) -> None:
    manifest = json.loads((FIXTURES / f"keys_{variant}.json").read_text())
    expected = [
        (e["key"].removeprefix("encoder."), e["shape"], e["dtype"], e["kind"])
        for e in manifest["keys"]
        if e["key"].startswith("encoder.")
    ]
    params = dict(swinb.named_parameters())
    buffers = dict(swinb.named_buffers())
    got = []
    for key, value in swinb.state_dict().items():
        kind = "parameter" if key in params else "buffer" if key in buffers else "?"
        got.append((key, list(value.shape), str(value.dtype).removeprefix("torch."), kind))
    assert len(expected) == 324
    assert got == expected


def test_frozen_stages_as_official(swinb: SwinB) -> None:
    # TRAIN_ENCODER_FREEZE_AT = 2: patch embedding and stage 0 frozen, stage 0's merging trainable.
    frozen = {n for n, p in swinb.named_parameters() if not p.requires_grad}
    assert frozen
    for name, _ in swinb.named_parameters():
        expect = name.startswith(("patch_embed.", "layers.0.blocks."))
        assert (name in frozen) == expect, name
    assert all(isinstance(b.drop_path, torch.nn.Identity) for b in swinb.layers[0].blocks)
    rates = [b.drop_path.drop_prob for b in swinb.layers[2].blocks]
    # linspace(0, 0.3, 24) over all four stages, the dropped one included.
    assert rates == pytest.approx([0.3 * i / 23 for i in range(4, 22)])


# ----------------------------------------------------------------------------- building blocks


def test_relative_position_index_official_construction() -> None:
    for ws in (2, 3, 7):
        idx = relative_position_index(ws)
        assert idx.dtype == torch.int64 and idx.shape == (ws * ws, ws * ws)
        for i in range(ws * ws):
            for j in range(ws * ws):
                yi, xi, yj, xj = i // ws, i % ws, j // ws, j % ws
                assert idx[i, j] == (yi - yj + ws - 1) * (2 * ws - 1) + (xi - xj + ws - 1)
    model = tiny()
    for name, buf in model.named_buffers():
        assert name.endswith("relative_position_index")
        assert torch.equal(buf, relative_position_index(7))
    assert int(relative_position_index(7).max()) == 13 * 13 - 1


def official_rule_mask(hp: int, wp: int, ws: int, shift: int) -> torch.Tensor:
    """The official shifted-window mask: label 3x3 slice regions, -100 between different labels."""
    labels = torch.zeros(1, hp, wp, 1)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            labels[:, hs, wsl, :] = cnt
            cnt += 1
    win = window_partition(labels, ws).squeeze(-1)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def test_shifted_window_mask_small_case_by_hand() -> None:
    mask = shifted_window_mask(4, 4, window_size=2, shift_size=1)
    assert mask.shape == (4, 4, 4)
    # Top-left window lies in one region: nothing masked.
    assert torch.all(mask[0] == 0)
    # Bottom-right window: its 4 tokens are in 4 different regions; only the diagonal is free.
    assert torch.equal(mask[3], torch.full((4, 4), -100.0).fill_diagonal_(0.0))
    # Top-right window: columns 2 and 3 are different regions, rows 0-1 the same.
    assert torch.equal(mask[1] == 0, torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1]] * 2, dtype=torch.bool))


@pytest.mark.parametrize(
    ("hp", "wp", "ws", "shift"), [(4, 4, 2, 1), (14, 21, 7, 3), (7, 14, 7, 3), (12, 8, 4, 2)]
)
def test_shifted_window_mask_matches_official_rule(hp: int, wp: int, ws: int, shift: int) -> None:
    assert torch.equal(shifted_window_mask(hp, wp, ws, shift), official_rule_mask(hp, wp, ws, shift))


def test_window_partition_roundtrip() -> None:
    x = torch.randn(2, 14, 21, 5)
    w = window_partition(x, 7)
    assert w.shape == (2 * 2 * 3, 49, 5)
    assert torch.equal(w[4].view(7, 7, 5), x[0, 7:14, 7:14])  # image 0, window row 1, col 1
    assert torch.equal(window_reverse(w, 7, 14, 21), x)


@pytest.mark.parametrize("shifted", [False, True])
def test_sdpa_equals_explicit_attention(shifted: bool) -> None:
    torch.manual_seed(1)
    attn = WindowAttention(dim=32, window_size=7, num_heads=4)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    batch, hp, wp = 2, 14, 21
    x = torch.randn(batch * (hp // 7) * (wp // 7), 49, 32)
    mask = shifted_window_mask(hp, wp, 7, 3) if shifted else None
    with torch.no_grad():
        got = attn(x, mask, batch)
        # softmax(q k^T * scale + bias (+ mask)) v, written out.
        q, k, v = attn.qkv(x).view(x.shape[0], 49, 3, 4, 8).permute(2, 0, 3, 1, 4)
        logits = (q * 8**-0.5) @ k.transpose(-2, -1)
        bias = attn.relative_position_bias_table[relative_position_index(7).view(-1)].view(49, 49, 4)
        logits = logits + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            logits = (logits.view(batch, nw, 4, 49, 49) + mask[None, :, None]).view(-1, 4, 49, 49)
        ref = attn.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(x.shape[0], 49, 32))
    assert (got - ref).abs().max().item() <= 1e-5


# ----------------------------------------------------------------------------- whole encoder


def reference_forward(model: SwinB, x: torch.Tensor) -> list[torch.Tensor]:
    """The official algorithm step by step (pad, roll, partition, explicit softmax, reverse, crop)."""
    pe = model.patch_embed
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4))
    x = pe.proj(x)
    hh, ww = x.shape[-2:]
    x = pe.norm(x.flatten(2).transpose(1, 2))
    outs = []
    for i, layer in enumerate(model.layers):
        ws, shift = 7, 3
        hp, wp = -(-hh // ws) * ws, -(-ww // ws) * ws
        mask = official_rule_mask(hp, wp, ws, shift)
        b, _, c = x.shape
        for blk in layer.blocks:
            a = blk.attn
            heads = a.num_heads
            y = blk.norm1(x).view(b, hh, ww, c)
            y = F.pad(y, (0, 0, 0, wp - ww, 0, hp - hh))
            if blk.shift_size:
                y = torch.roll(y, (-shift, -shift), (1, 2))
            win = window_partition(y, ws)
            q, k, v = a.qkv(win).view(win.shape[0], ws * ws, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            att = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
            bias = a.relative_position_bias_table[a.relative_position_index.view(-1)]
            att = att + bias.view(ws * ws, ws * ws, heads).permute(2, 0, 1).unsqueeze(0)
            if blk.shift_size:
                nw = mask.shape[0]
                att = (att.view(b, nw, heads, ws * ws, ws * ws) + mask[None, :, None]).view(att.shape)
            y = a.proj((att.softmax(-1) @ v).transpose(1, 2).reshape(win.shape[0], ws * ws, c))
            y = window_reverse(y, ws, hp, wp)
            if blk.shift_size:
                y = torch.roll(y, (shift, shift), (1, 2))
            x = x + y[:, :hh, :ww].reshape(b, hh * ww, c)
            x = x + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(x))))
        outs.append(getattr(model, f"norm{i}")(x).view(b, hh, ww, c).permute(0, 3, 1, 2))
        if layer.downsample is not None:
            m = F.pad(x.view(b, hh, ww, c), (0, 0, 0, ww % 2, 0, hh % 2))
            m = torch.cat([m[:, 0::2, 0::2], m[:, 1::2, 0::2], m[:, 0::2, 1::2], m[:, 1::2, 1::2]], -1)
            x = layer.downsample.reduction(layer.downsample.norm(m.view(b, -1, 4 * c)))
            hh, ww = (hh + 1) // 2, (ww + 1) // 2
    outs.append(outs[-1])
    return outs


@pytest.mark.parametrize(
    ("batch", "height", "width"),
    [
        (1, 80, 208),  # multiples of 16, not of 32; 20x52, 10x26, 5x13 maps, none a multiple of 7
        (2, 112, 112),  # sides multiple of the window at stride 16, shift masks over full windows
        (1, 52, 90),  # not even a multiple of 4: patch padding and odd merging
    ],
)
def test_forward_equals_official_algorithm(batch: int, height: int, width: int) -> None:
    model = tiny()
    randomize(model, seed=height)
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(width))
    with torch.no_grad():
        got = model(x)
        ref = reference_forward(model, x)
    assert len(got) == 4 and got[3] is got[2]
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape
        assert (g - r).abs().max().item() <= 1e-5 * max(1.0, r.abs().max().item())


def test_swinb_forward_shapes_on_odd_size(swinb: SwinB) -> None:
    # 80 x 208 is a multiple of 16 but not of 32; stride-16 map 5 x 13 is padded to 7 x 14.
    with torch.inference_mode():
        outs = swinb(torch.randn(1, 3, 80, 208))
    shapes = [tuple(o.shape) for o in outs]
    assert shapes == [(1, 128, 20, 52), (1, 256, 10, 26), (1, 512, 5, 13), (1, 512, 5, 13)]
    assert all(torch.isfinite(o).all() for o in outs)
    assert outs[3] is outs[2]


def test_random_state_dict_roundtrip() -> None:
    src = tiny()
    randomize(src, seed=7)
    dst = tiny()
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    result = dst.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in dst.state_dict().items():
        assert value.dtype == sd[key].dtype and torch.equal(value, sd[key]), key
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(src(x), dst(x), strict=True):
            assert torch.equal(a, b)
    # fp16 copies of the weights (how the fixtures store checkpoints) load into the fp32 model.
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    dst.load_state_dict(half)
    assert all(p.dtype == torch.float32 for p in dst.parameters())
    assert dst.layers[0].blocks[0].attn.relative_position_index.dtype == torch.int64


def test_drop_path_only_in_training() -> None:
    model = tiny(drop_path_rate=0.9)
    randomize(model, seed=3)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        eval_a, eval_b = model(x)[2], model(x)[2]
        assert torch.equal(eval_a, eval_b)
        model.train()
        torch.manual_seed(0)
        train_out = model(x)[2]
    assert not torch.allclose(train_out, eval_a)


def test_bf16_autocast_runs_close_to_fp32() -> None:
    model = tiny()
    randomize(model, seed=11)
    x = torch.randn(1, 3, 80, 112)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    for r, lo in zip(ref, low, strict=True):
        assert lo.shape == r.shape and torch.isfinite(lo).all()
        rel = ((lo.float() - r).norm() / r.norm()).item()
        assert rel < 0.05, rel


def test_rejects_wrong_input_shape() -> None:
    with pytest.raises(ValueError, match="expects a"):
        tiny()(torch.randn(1, 4, 32, 32))


def test_cached_window_maps_serve_inference_and_training() -> None:
    model = tiny()
    randomize(model, seed=5)
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        first = model(x)
    with torch.no_grad():
        again = model(x)  # same size: cached index maps
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # Maps cached under inference_mode must also serve an autograd forward of the same size.
    model.train()
    table = model.layers[2].blocks[0].attn.relative_position_bias_table
    table.requires_grad_(True)
    model(x)[2].square().mean().backward()
    assert table.grad is not None and table.grad.abs().sum() > 0
    with torch.no_grad():
        other = model.eval()(torch.randn(1, 3, 48, 80))  # new size: maps rebuilt
    assert other[0].shape == (1, 16, 12, 20)
