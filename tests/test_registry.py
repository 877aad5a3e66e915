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
    assert cli.main(["download", "no-such-model"]) == 2  # a usage error
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
    assert "samtrack download r50-deaotl sam-vit-b" in str(err.value) and " | " not in str(err.value)


def test_sam3_serves_three_kinds_and_lite_text_detectors_are_listed(capsys):
    sam3 = registry.get_spec("sam3")
    assert sam3.hub_id == "facebook/sam3" and sam3.gated
    assert set(sam3.kinds) == {"segmenter", "tracker", "detector"}
    for kind in ("segmenter", "tracker", "detector"):
        assert registry.find_spec("sam3", kind) is sam3
    for variant in ("s0", "s1", "l"):
        spec = registry.get_spec(f"sam3-litetext-{variant}", kind="detector")
        assert spec.hub_id == f"vil-uob/sam3-litetext-{variant}" and spec.kinds == ("detector",)
    assert cli.main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["sam3"]["kinds"] == ["segmenter", "tracker", "detector"] and rows["sam3"]["gated"] is True
    assert cli.main(["models", "--kind", "tracker"]) == 0
    assert "segmenter/tracker/detector" in next(line for line in capsys.readouterr().out.splitlines()
                                                 if line.startswith("sam3 "))


def _refusing_hub(monkeypatch, error: Exception) -> list[dict]:
    """Stand in for the hub: listing works, fetching the files raises `error` (what a gated repo does)."""
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        raise error

    monkeypatch.setattr(registry, "_check_reachable", lambda url: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo_id: ["model.safetensors"])
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def _http_error(cls, status: int) -> Exception:
    import httpx

    request = httpx.Request("GET", "https://huggingface.co/api/models/facebook/sam3/revision/main")
    return cls(f"{status} Client Error", response=httpx.Response(status, request=request))


@pytest.mark.parametrize("status,token", [(401, None), (403, "hf_test")], ids=["no-token", "license-not-accepted"])
def test_download_of_gated_sam3_says_what_to_do(cache, monkeypatch, capsys, status, token):
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache / "no-token-file"))
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    else:
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    calls = _refusing_hub(monkeypatch, _http_error(GatedRepoError if status == 403 else HfHubHTTPError, status))
    assert cli.main(["--quiet", "download", "sam3"]) == 1
    err = capsys.readouterr().err
    assert calls and calls[0]["repo_id"] == "facebook/sam3" and "token" not in calls[0]  # the hub's own lookup
    assert "Accept its license at https://huggingface.co/facebook/sam3" in err
    assert "`hf auth login`" in err and "HF_TOKEN=hf_..." in err and "`samtrack download sam3` again" in err
    assert ("no Hugging Face token was found" in err) == (token is None)
    assert "Client Error" not in err  # one message, not the hub's traceback text
    with pytest.raises(ModelError, match="gated"):  # the same on first use through a loader
        registry.resolve_pretrained("sam3", "tracker")


def test_other_download_failures_of_sam3_are_not_called_a_license_problem(cache, monkeypatch):
    _refusing_hub(monkeypatch, ConnectionError("connection reset"))
    with pytest.raises(ModelError, match="the download failed .*connection reset") as err:
        registry.download("sam3", progress=False)
    assert "accept its license" in str(err.value)  # the not-cached message still names the gate


def test_a_registered_hub_id_is_its_registry_entry(cache, monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    assert registry.find_spec("facebook/sam3") is registry.get_spec("sam3")
    assert registry.find_spec("facebook/sam2.1-hiera-tiny", kind="tracker").name == "sam2.1-tiny"
    _refusing_hub(monkeypatch, _http_error(GatedRepoError, 403))
    with pytest.raises(ModelError, match="Accept its license at https://huggingface.co/facebook/sam3"):
        registry.resolve_pretrained("facebook/sam3", "segmenter")  # the gate is named for the hub id too
