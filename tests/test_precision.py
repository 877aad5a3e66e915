"""Precision: `auto` follows SAM-Track (fp16 on CUDA, bf16 on CPUs where bf16 is faster, else fp32), it
reaches trackers and segmenters from the CLI and the session, and run.json records what ran."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import DEAOT_FIXTURES

from samtrack import cli
from samtrack.errors import InputError
from samtrack.models.common import native_bf16, resolve_precision
from samtrack.models.trackers import load_tracker
from samtrack.tracking.session import Session
from samtrack.tracking.settings import Settings

CKPT = DEAOT_FIXTURES / "deaott.pth"


def test_auto_precision_per_device():
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native_bf16() else "fp32")
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(InputError, match="precision"):
        resolve_precision("int8", torch.device("cpu"))
    with pytest.raises(InputError, match="precision"):
        Settings(precision="half")


def test_python_api_defaults_to_auto_and_says_what_runs():
    assert load_tracker("deaot-t", CKPT).precision == resolve_precision("auto", torch.device("cpu"))
    assert load_tracker("deaot-t", CKPT, precision="fp32").precision == "fp32"


def test_session_setting_reaches_the_tracker(blackswan_small, tmp_path):
    frames, swan = blackswan_small
    settings = Settings(precision="bf16").updated({"tracker.model": "deaot-t", "tracker.checkpoint": str(CKPT)})
    with Session(frames, tmp_path / "run", settings) as s:
        s.add_object(0, mask=swan)
        s.propagate(0, 1)
        assert s.models.tracker.precision == "bf16"
        assert s.precision_used() == {"tracker": "bf16"}


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_cli_precision_is_recorded_in_run_json(blackswan_small, tiny_sam, tmp_path, precision):
    frames, _ = blackswan_small
    out = tmp_path / "run"
    code = cli.main(["--quiet", "track", str(frames), "--out", str(out), "--box", "50,20,120,80",
                     "--segmenter", tiny_sam, "--tracker", "deaot-t", "--checkpoint", str(CKPT),
                     "--precision", precision, "--end", "1", "--no-video", "--no-gif"])
    assert code == 0
    ran = resolve_precision(precision, torch.device("cpu"))
    run = json.loads((out / "run.json").read_text())
    assert run["models"]["precision"] == {"segmenter": ran, "tracker": ran}
    assert run["settings"]["precision"] == precision


@pytest.mark.parametrize(("flags", "fp32_s", "bf16_s", "expected"), [
    (set(), 1.0, 0.1, False),               # no bf16 instructions: never bf16, whatever the speed
    ({"avx512_bf16"}, 1.0, 0.5, True),      # bf16 products twice as fast
    ({"avx512_bf16"}, 1.0, 2.0, False),     # instructions, but bf16 products at half the fp32 rate
    ({"amx_bf16"}, 1.0, 0.9, False),        # faster, but not by the required margin
])
def test_auto_picks_bf16_only_where_it_measures_faster(monkeypatch, flags, fp32_s, bf16_s, expected):
    from samtrack.models import common

    monkeypatch.setattr(common, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(common.torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(common, "best_matmul_seconds", lambda dtype: fp32_s if dtype == torch.float32 else bf16_s)
    common.native_bf16.cache_clear()
    try:
        assert common.native_bf16() is expected
        assert common.resolve_precision("auto", torch.device("cpu")) == ("bf16" if expected else "fp32")
    finally:
        common.native_bf16.cache_clear()
