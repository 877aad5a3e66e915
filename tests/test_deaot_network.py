"""Architecture and checkpoint loading of every released AOT/DeAOT variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import DEAOT_FIXTURES

from samtrack.errors import ModelError
from samtrack.models.deaot.checkpoint import load_checkpoint, read_state_dict
from samtrack.models.deaot.config import VARIANTS, get_variant
from samtrack.models.deaot.network import AOTNetwork

NAMES = sorted(VARIANTS)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_matches_official_keys(name: str) -> None:
    cfg = VARIANTS[name]
    manifest = json.loads((DEAOT_FIXTURES / f"keys_{cfg.official_name}.json").read_text())
    net = AOTNetwork(cfg)
    buffers = {n for n, _ in net.named_buffers()}
    got = [{"key": k, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
            "kind": "buffer" if k in buffers else "parameter"} for k, t in net.state_dict().items()]
    assert got == manifest["keys"]
    assert sum(p.numel() for p in net.parameters()) == manifest["num_parameters"]


@pytest.mark.parametrize("alias,name", [("r50_deaotl", "r50-deaotl"), ("deaott", "deaot-t"),
                                        ("SwinB_AOTL", "swinb-aotl"), ("aot-l", "aot-l")])
def test_aliases(alias: str, name: str) -> None:
    assert get_variant(alias).name == name


def test_unknown_variant_is_model_error() -> None:
    with pytest.raises(ModelError, match="known names"):
        get_variant("deaot-xxl")


@pytest.fixture(scope="module")
def deaott_state() -> dict[str, torch.Tensor]:
    return read_state_dict(DEAOT_FIXTURES / "deaott.pth")


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("layout", ["state_dict", "model", "bare", "module_prefix_fp32"])
def test_checkpoint_layouts_load(layout: str, deaott_state: dict, tmp_path: Path) -> None:
    sd = dict(deaott_state)
    if layout == "state_dict":
        obj = {"state_dict": sd, "optimizer": {"lr": torch.tensor(0.1)}, "step": 3}
    elif layout == "model":
        obj = {"model": sd}
    elif layout == "bare":
        obj = sd
    else:
        obj = {"state_dict": {f"module.{k}": v.float() for k, v in sd.items()}}
    net = AOTNetwork(VARIANTS["deaot-t"])
    load_checkpoint(net, _save(obj, tmp_path / "ckpt.pth"))
    for key, value in net.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, sd[key].float()), key


def test_wrong_variant_names_expected_and_found(tmp_path: Path) -> None:
    net = AOTNetwork(VARIANTS["deaot-s"])
    with pytest.raises(ModelError, match=r"not a deaot-s checkpoint: it looks like deaot-t"):
        load_checkpoint(net, DEAOT_FIXTURES / "deaott.pth")


def test_deeper_checkpoint_into_shallower_model_is_rejected(tmp_path: Path) -> None:
    # a 3-layer DeAOT holds every key of the 1-layer one, plus more: that must not pass silently
    sd = AOTNetwork(VARIANTS["deaot-b"]).state_dict()
    net = AOTNetwork(VARIANTS["deaot-t"])
    with pytest.raises(ModelError, match=r"looks like deaot-b or deaot-l .*unexpected keys"):
        load_checkpoint(net, _save({"state_dict": sd}, tmp_path / "b.pth"))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_non_checkpoint_file(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="x.pth is not a PyTorch tracker checkpoint"):
        load_checkpoint(AOTNetwork(VARIANTS["deaot-t"]), path)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    data = (DEAOT_FIXTURES / "deaott.pth").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_checkpoint(AOTNetwork(VARIANTS["deaot-t"]), path)


def test_checkpoint_without_tensors(tmp_path: Path) -> None:
    path = _save({"epoch": 3, "state_dict": {}}, tmp_path / "empty.pth")
    with pytest.raises(ModelError, match="holds no model weights"):
        load_checkpoint(AOTNetwork(VARIANTS["deaot-t"]), path)


def test_missing_file() -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(AOTNetwork(VARIANTS["deaot-t"]), Path("/nonexistent/deaott.pth"))


def _unfold_local_attention(q, k, v, max_dis):
    """Local attention written the plain way (keys and values unfolded into every query's window)."""
    b, d, h, w = q.shape
    win = 2 * max_dis + 1
    unfold = torch.nn.Unfold(win, padding=max_dis)
    keys = unfold(k).view(b, d, win * win, h * w)
    logits = (q.view(b, d, 1, h * w) * keys).sum(1)  # (B, win², hw)
    inside = unfold(torch.ones(1, 1, h, w)).view(1, win * win, h * w) > 0
    attn = torch.softmax(logits.masked_fill(~inside, -1e8), dim=1)
    values = unfold(v).view(b, v.shape[1], win * win, h * w)
    return attn, (attn.unsqueeze(1) * values).sum(2).permute(2, 0, 1)  # (hw, B, C)


@pytest.mark.parametrize("h,w,tile", [(9, 13, 8), (5, 23, 4), (16, 8, 8), (3, 2, 8), (9, 13, None), (3, 2, None)])
def test_local_attention_equals_the_unfolded_formulation(h: int, w: int, tile: int) -> None:
    from samtrack.models.deaot.attention import local_aggregate, local_logits, local_softmax

    torch.manual_seed(0)
    q, k, v = torch.randn(3, 6, h, w), torch.randn(3, 6, h, w), torch.randn(3, 5, h, w)
    attn = local_softmax(local_logits(q, k, max_dis=7), h, w, max_dis=7)
    expected_attn, expected = _unfold_local_attention(q, k, v, max_dis=7)
    torch.testing.assert_close(attn, expected_attn)
    torch.testing.assert_close(local_aggregate(attn, v, h, w, max_dis=7, tile=tile), expected)


def test_local_attention_in_bf16_stays_close_to_float32() -> None:
    """bf16 takes the whole-row aggregation (oneDNN copies overlapping tiles): same sums, bf16 rounding."""
    from samtrack.models.deaot.attention import local_aggregate, local_logits, local_softmax

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 9, 13), torch.randn(2, 6, 9, 13), torch.randn(2, 5, 9, 13)
    attn = local_softmax(local_logits(q, k, max_dis=7), 9, 13, max_dis=7)
    expected = local_aggregate(attn, v, 9, 13, max_dis=7)
    low = local_aggregate(attn.bfloat16(), v.bfloat16(), 9, 13, max_dis=7)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected, atol=0.03, rtol=0.02)


@pytest.mark.parametrize("name", ["deaot-t", "r50-deaotl"])
def test_folding_batch_norms_keeps_encoder_outputs(name: str) -> None:
    """Trained batch norms are far from identity: randomise them, fold, and compare the features."""
    import copy

    from samtrack.models.deaot.encoders import FrozenBatchNorm2d

    torch.manual_seed(0)
    net = AOTNetwork(VARIANTS[name]).eval()
    for module in net.encoder.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0, 0.2)
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    folded = copy.deepcopy(net)
    folded.fold_batch_norms()
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in folded.modules())
    image = torch.randn(1, 3, 97, 129)
    with torch.inference_mode():
        for got, expected in zip(folded.encode_image(image), net.encode_image(image)):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("videos", [1, 2])
def test_token_convolutions_equal_the_plain_map_convolution(videos: int) -> None:
    from samtrack.models.deaot.layers import DWConv2d, GNActDWConv2d

    torch.manual_seed(0)
    h, w, c = 7, 9, 64
    tokens = torch.randn(h * w, videos, c)
    as_map = tokens.view(h, w, videos, c).permute(2, 3, 0, 1).contiguous()
    for module in (DWConv2d(c), GNActDWConv2d(c)):
        plain = module.conv.weight.contiguous()
        pre = module.gn(as_map) if isinstance(module, GNActDWConv2d) else as_map
        pre = torch.nn.functional.gelu(pre) if isinstance(module, GNActDWConv2d) else pre
        expected = torch.nn.functional.conv2d(pre, plain, padding=2, groups=c)
        expected = expected.flatten(2).permute(2, 0, 1)
        torch.testing.assert_close(module(tokens, (h, w)), expected)
