"""Model registry: names, local paths, cache, downloads with checksums, clear offline errors."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from samtrack import cli
from samtrack.errors import ModelError
from samtrack.models import registry

REQUIRED = [
    "sam-vit-b", "sam-vit-l", "sam-vit-h", "sam-hq-vit-b", "sam2.1-tiny", "sam2.1-small", "sam2.1-base-plus",
    "sam2.1-large", "edgetam", "grounding-dino-tiny", "grounding-dino-base", "ast-audioset",
    "r50-deaotl", "deaot-t", "deaot-s", "deaot-b", "deaot-l", "swinb-deaotl",
    "aot-t", "aot-s", "aot-b", "aot-l", "r50-aotl", "swinb-aotl",
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMTRACK_CACHE", str(tmp_path / "cache"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # read at call time by the hub client
    monkeypatch.delenv("SAMTRACK_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "cache"


def test_every_required_model_is_named_with_a_source():
    for name in REQUIRED:
        spec = registry.get_spec(name)
        assert spec.hub_id or (spec.url and spec.filename), name
    assert {registry.default_name(k) for k in registry.KINDS} == {
        "sam-vit-b", "r50-deaotl", "grounding-dino-tiny", "ast-audioset"}


@pytest.mark.parametrize("alias,name", [("r50_deaotl", "r50-deaotl"), ("R50-DeAOT-L", "r50-deaotl"),
                                        ("deaott", "deaot-t"), ("swinb_aotl", "swinb-aotl"), ("vit_b", "sam-vit-b")])
def test_aliases(alias, name):
    assert registry.canonical_name(alias) == name


def test_unknown_name_lists_the_names_of_its_kind():
    with pytest.raises(ModelError, match="unknown tracker model 'r51'.*r50-deaotl"):
        registry.get_spec("r51", kind="tracker")
    with pytest.raises(ModelError):
        registry.get_spec("sam-vit-b", kind="tracker")  # right name, wrong kind


def test_local_paths_pass_through(tmp_path):
    ckpt = tmp_path / "my.pth"
    ckpt.write_bytes(b"x")
    assert registry.resolve_file(str(ckpt), "tracker") == ckpt
    assert registry.resolve_pretrained(str(tmp_path), "segmenter") == str(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        registry.resolve_file(str(tmp_path / "missing.pth"), "tracker")
    with pytest.raises(ModelError, match="needs a directory"):
        registry.resolve_pretrained(str(ckpt), "segmenter")


def test_offline_missing_weights_say_which_file_where_and_how(cache, monkeypatch):
    monkeypatch.setenv("SAMTRACK_OFFLINE", "1")
    with pytest.raises(ModelError) as err:
        registry.resolve_file("r50_deaotl", "tracker")
    msg = str(err.value)
    assert "r50-deaotl" in msg and str(cache / "R50_DeAOTL_PRE_YTB_DAV.pth") in msg
    assert "samtrack download r50-deaotl" in msg
    with pytest.raises(ModelError, match="samtrack download sam-vit-b.*facebook/sam-vit-base"):
        registry.resolve_pretrained("sam-vit-b", "segmenter")


def test_hub_snapshot_in_cache_resolves_without_network(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = tmp_path / "hf" / "models--facebook--sam-vit-base" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"")
    refs = tmp_path / "hf" / "models--facebook--sam-vit-base" / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc")
    assert registry.resolve_pretrained("sam-vit-b", "segmenter") == str(snap)
    assert registry.is_cached(registry.get_spec("sam-vit-b"))


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _register(monkeypatch, spec):
    monkeypatch.setitem(registry._BY_KEY, registry._key(spec.name), spec)


def test_url_download_checks_size_and_sha256(cache, file_server, monkeypatch):
    root, base = file_server
    payload = b"checkpoint bytes " * 1000
    (root / "w.pth").write_bytes(payload)
    good = replace(registry.get_spec("deaot-t"), name="test-good", filename="good.pth", url=f"{base}/w.pth",
                   size=len(payload), sha256=hashlib.sha256(payload).hexdigest(), aliases=())
    _register(monkeypatch, good)
    path = registry.resolve_file("test-good", "tracker")  # downloads on first use
    assert path == cache / "good.pth" and path.read_bytes() == payload
    assert registry.is_cached(good)

    bad = replace(good, name="test-bad", filename="bad.pth", sha256="0" * 64)
    _register(monkeypatch, bad)
    with pytest.raises(ModelError, match="sha256"):
        registry.download("test-bad", progress=False)
    assert not (cache / "bad.pth").exists() and not (cache / "bad.pth.part").exists()


def test_cli_models_and_download(cache, file_server, monkeypatch, capsys):
    assert cli.main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= set(REQUIRED)
    assert all(r["cached"] is False for r in rows if r["kind"] == "tracker")

    root, base = file_server
    (root / "w.pth").write_bytes(b"abc")
    spec = replace(registry.get_spec("deaot-t"), name="test-cli", filename="cli.pth", url=f"{base}/w.pth",
                   size=3, sha256=hashlib.sha256(b"abc").hexdigest())
    _register(monkeypatch, spec)
    assert cli.main(["--quiet", "download", "test-cli"]) == 0
    assert Path(cache / "cli.pth").read_bytes() == b"abc"
    assert cli.main(["download", "no-such-model"]) == 1
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli.main(["download"])
    assert usage.value.code == 2


def test_ensure_available_reports_every_missing_model_at_once(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMTRACK_OFFLINE", "1")
    import torch

    local = tmp_path / "mine.pth"
    torch.save({"w": torch.zeros(1)}, local)
    registry.ensure_available([(str(local), "tracker")])  # a local checkpoint: its loader checks the rest
    local.write_bytes(b"x")
    with pytest.raises(ModelError, match="mine.pth is not a PyTorch tracker checkpoint"):
        registry.ensure_available([(str(local), "tracker")])
    with pytest.raises(ModelError) as err:
        registry.ensure_available([("r50-deaotl", "tracker"), ("sam-vit-b", "segmenter")])
    assert "samtrack download r50-deaotl" in str(err.value) and "samtrack download sam-vit-b" in str(err.value)
