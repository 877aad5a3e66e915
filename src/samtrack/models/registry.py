"""Named models: where their weights come from, where they are cached, and clear errors when missing.

Two kinds of sources:
- Hugging Face hub models (SAM, SAM-HQ, SAM 2.1, EdgeTAM, Grounding DINO, AST) live in the hub's own
  cache (``HF_HOME`` / ``HF_HUB_CACHE``) and load with ``from_pretrained``.
- Single files that are not on the hub (the official DeAOT/AOT ``.pth`` releases, the original SAM
  ``.pth`` files) are fetched from their URL into ``$SAMTRACK_CACHE`` (default ``~/.cache/samtrack``),
  with the size and sha256 checked where they are published.

Every model option also accepts a local path: a directory saved with ``save_pretrained`` or a
checkpoint file. ``SAMTRACK_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` turn off downloads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from samtrack.errors import ModelError, UnknownModelError
from samtrack.models.weights import check_checkpoint_file

KINDS = ("segmenter", "tracker", "detector", "audio")
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
_META_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken"]


@dataclass(frozen=True)
class ModelSpec:
    """One named model a user can pick."""

    name: str
    kind: str  # one of KINDS
    family: str  # sam, sam-original, sam-hq, sam2, edgetam, sam3, sam3-lite-text, grounding-dino, ast, deaot, aot
    description: str
    approx_mb: int  # download size, for the listing
    hub_id: str | None = None
    url: str | None = None
    filename: str | None = None
    sha256: str | None = None  # None where the publisher gives no checksum
    size: int | None = None  # exact byte count where known
    aliases: tuple[str, ...] = ()
    default: bool = False
    also: tuple[str, ...] = ()  # further kinds the same weights serve (SAM 2.1 / EdgeTAM: tracker)
    gated: bool = False  # the hub repo needs its license accepted and a token (SAM 3)

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.kind, *self.also)

    @property
    def source(self) -> str:
        return f"hf://{self.hub_id}" if self.hub_id else str(self.url)


def _gdrive(file_id: str) -> str:
    # The usercontent endpoint serves large files without the "can't scan for viruses" page.
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


_SAM_PTH = "https://dl.fbaipublicfiles.com/segment_anything/"

SPECS: tuple[ModelSpec, ...] = (
    # --- segmenters (transformers) ---
    ModelSpec("sam-vit-b", "segmenter", "sam", "SAM ViT-B (SAM-Track's default)", 375,
              hub_id="facebook/sam-vit-base", default=True, aliases=("vit_b", "sam_vit_b")),
    ModelSpec("sam-vit-l", "segmenter", "sam", "SAM ViT-L", 1250, hub_id="facebook/sam-vit-large",
              aliases=("vit_l", "sam_vit_l")),
    ModelSpec("sam-vit-h", "segmenter", "sam", "SAM ViT-H", 2560, hub_id="facebook/sam-vit-huge",
              aliases=("vit_h", "sam_vit_h")),
    ModelSpec("sam-hq-vit-b", "segmenter", "sam-hq", "SAM-HQ ViT-B (sharper boundaries)", 380,
              hub_id="syscv-community/sam-hq-vit-base"),
    ModelSpec("sam-hq-vit-l", "segmenter", "sam-hq", "SAM-HQ ViT-L", 1260, hub_id="syscv-community/sam-hq-vit-large"),
    ModelSpec("sam-hq-vit-h", "segmenter", "sam-hq", "SAM-HQ ViT-H", 2570, hub_id="syscv-community/sam-hq-vit-huge"),
    ModelSpec("sam2.1-tiny", "segmenter", "sam2", "SAM 2.1 Hiera-T", 156, hub_id="facebook/sam2.1-hiera-tiny",
              aliases=("sam2.1_hiera_tiny", "sam2.1-hiera-tiny"), also=("tracker",)),
    ModelSpec("sam2.1-small", "segmenter", "sam2", "SAM 2.1 Hiera-S", 184, hub_id="facebook/sam2.1-hiera-small",
              aliases=("sam2.1_hiera_small", "sam2.1-hiera-small"), also=("tracker",)),
    ModelSpec("sam2.1-base-plus", "segmenter", "sam2", "SAM 2.1 Hiera-B+", 324,
              hub_id="facebook/sam2.1-hiera-base-plus", aliases=("sam2.1_hiera_base_plus", "sam2.1-hiera-base-plus"),
              also=("tracker",)),
    ModelSpec("sam2.1-large", "segmenter", "sam2", "SAM 2.1 Hiera-L", 898, hub_id="facebook/sam2.1-hiera-large",
              aliases=("sam2.1_hiera_large", "sam2.1-hiera-large"), also=("tracker",)),
    ModelSpec("edgetam", "segmenter", "edgetam", "EdgeTAM (SAM 2-class, on-device speed)", 56,
              hub_id="yonigozlan/EdgeTAM-hf", also=("tracker",)),
    # The original segment-anything releases, converted to transformers' layout on load.
    ModelSpec("sam-vit-b-original", "segmenter", "sam-original", "SAM ViT-B, original sam_vit_b_01ec64.pth", 358,
              url=_SAM_PTH + "sam_vit_b_01ec64.pth", filename="sam_vit_b_01ec64.pth", size=375_042_383,
              sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    ModelSpec("sam-vit-l-original", "segmenter", "sam-original", "SAM ViT-L, original sam_vit_l_0b3195.pth", 1192,
              url=_SAM_PTH + "sam_vit_l_0b3195.pth", filename="sam_vit_l_0b3195.pth", size=1_249_524_607,
              sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    ModelSpec("sam-vit-h-original", "segmenter", "sam-original", "SAM ViT-H, original sam_vit_h_4b8939.pth", 2446,
              url=_SAM_PTH + "sam_vit_h_4b8939.pth", filename="sam_vit_h_4b8939.pth", size=2_564_550_879,
              sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    # SAM 3: one checkpoint for the detector (text -> instance masks), the SAM 2-style segmenter and
    # tracker, and concept tracking (detect-and-track); a gated hub repo.
    ModelSpec("sam3", "segmenter", "sam3", "SAM 3 (text detector, segmenter and tracker in one; gated)", 3450,
              hub_id="facebook/sam3", also=("tracker", "detector"), gated=True),
    # --- detectors and audio taggers (transformers) ---
    ModelSpec("grounding-dino-tiny", "detector", "grounding-dino",
              "Grounding DINO Swin-T (the weights of SAM-Track's groundingdino_swint_ogc)", 690,
              hub_id="IDEA-Research/grounding-dino-tiny", default=True, aliases=("groundingdino_swint_ogc",)),
    ModelSpec("grounding-dino-base", "detector", "grounding-dino", "Grounding DINO Swin-B", 940,
              hub_id="IDEA-Research/grounding-dino-base", aliases=("groundingdino_swinb_cogcoor",)),
    ModelSpec("sam3-litetext-s0", "detector", "sam3-lite-text", "SAM 3 detector, MobileCLIP-S0 text encoder (0.5B)",
              2000, hub_id="vil-uob/sam3-litetext-s0"),
    ModelSpec("sam3-litetext-s1", "detector", "sam3-lite-text", "SAM 3 detector, MobileCLIP-S1 text encoder (0.6B)",
              2400, hub_id="vil-uob/sam3-litetext-s1"),
    ModelSpec("sam3-litetext-l", "detector", "sam3-lite-text", "SAM 3 detector, MobileCLIP-L text encoder (0.6B)",
              2400, hub_id="vil-uob/sam3-litetext-l"),
    ModelSpec("ast-audioset", "audio", "ast", "Audio Spectrogram Transformer fine-tuned on AudioSet (527 labels)",
              346, hub_id="MIT/ast-finetuned-audioset-10-10-0.4593", default=True),
    # --- DeAOT / AOT propagators: official PRE_YTB_DAV releases (Google Drive, no published checksum) ---
    ModelSpec("r50-deaotl", "tracker", "deaot", "R50-DeAOT-L (SAM-Track's default tracker), 19.8M params", 80,
              url=_gdrive("1QoChMkTVxdYZ_eBlZhK2acq9KMQZccPJ"), filename="R50_DeAOTL_PRE_YTB_DAV.pth",
              default=True, aliases=("r50_deaotl", "r50-deaot-l")),
    ModelSpec("swinb-deaotl", "tracker", "deaot", "SwinB-DeAOT-L, 70.3M params", 282,
              url=_gdrive("1g4E-F0RPOx9Nd6J7tU9AE1TjsouL4oZq"), filename="SwinB_DeAOTL_PRE_YTB_DAV.pth",
              aliases=("swinb_deaotl", "swinb-deaot-l")),
    ModelSpec("deaot-t", "tracker", "deaot", "DeAOT-T (MobileNetV2), 7.2M params", 29,
              url=_gdrive("1ThWIZQS03cYWx1EKNN8MIMnJS5eRowzr"), filename="DeAOTT_PRE_YTB_DAV.pth",
              aliases=("deaott",)),
    ModelSpec("deaot-s", "tracker", "deaot", "DeAOT-S (MobileNetV2), 10.2M params", 41,
              url=_gdrive("1YwIAV5tBtn5spSFxKLBQBEQGwPHyQlHi"), filename="DeAOTS_PRE_YTB_DAV.pth",
              aliases=("deaots",)),
    ModelSpec("deaot-b", "tracker", "deaot", "DeAOT-B (MobileNetV2), 13.2M params", 53,
              url=_gdrive("1BHxsonnvJXylqHlZ1zJHHc-ymKyq-CFf"), filename="DeAOTB_PRE_YTB_DAV.pth",
              aliases=("deaotb",)),
    ModelSpec("deaot-l", "tracker", "deaot", "DeAOT-L (MobileNetV2), 13.2M params", 53,
              url=_gdrive("18elNz_wi9JyVBcIUYKhRdL08MA-FqHD5"), filename="DeAOTL_PRE_YTB_DAV.pth",
              aliases=("deaotl",)),
    ModelSpec("r50-aotl", "tracker", "aot", "R50-AOT-L, 14.9M params", 60,
              url=_gdrive("1qJDYn3Ibpquu4ffYoQmVjg1YCbr2JQep"), filename="R50_AOTL_PRE_YTB_DAV.pth",
              aliases=("r50_aotl", "r50-aot-l")),
    ModelSpec("swinb-aotl", "tracker", "aot", "SwinB-AOT-L, 65.4M params", 262,
              url=_gdrive("192jCGQZdnuTsvX-CVra-KVZl2q1ZR0vW"), filename="SwinB_AOTL_PRE_YTB_DAV.pth",
              aliases=("swinb_aotl", "swinb-aot-l")),
    ModelSpec("aot-t", "tracker", "aot", "AOT-T (MobileNetV2), 5.7M params", 23,
              url=_gdrive("1owPmwV4owd_ll6GuilzklqTyAd0ZvbCu"), filename="AOTT_PRE_YTB_DAV.pth", aliases=("aott",)),
    ModelSpec("aot-s", "tracker", "aot", "AOT-S (MobileNetV2), 7.0M params", 28,
              url=_gdrive("1beU5E6Mdnr_pPrgjWvdWurKAIwJSz1xf"), filename="AOTS_PRE_YTB_DAV.pth", aliases=("aots",)),
    ModelSpec("aot-b", "tracker", "aot", "AOT-B (MobileNetV2), 8.3M params", 34,
              url=_gdrive("1hH-GOn4GAxHkV8ARcQzsUy8Ax6ndot-A"), filename="AOTB_PRE_YTB_DAV.pth", aliases=("aotb",)),
    ModelSpec("aot-l", "tracker", "aot", "AOT-L (MobileNetV2), 8.3M params", 34,
              url=_gdrive("1L1N2hkSPqrwGgnW9GyFHuG59_EYYfTG4"), filename="AOTL_PRE_YTB_DAV.pth", aliases=("aotl",)),
)


def _key(name: str) -> str:
    return re.sub(r"[-_\s]", "", name.strip().lower())


_BY_KEY: dict[str, ModelSpec] = {}
for _spec in SPECS:
    for _n in (_spec.name, *_spec.aliases, *((_spec.hub_id,) if _spec.hub_id else ())):
        _BY_KEY[_key(_n)] = _spec


def list_specs(kind: str | None = None) -> list[ModelSpec]:
    """All named models, optionally of one kind, in registry order."""
    return [s for s in SPECS if kind is None or kind in s.kinds]


def default_name(kind: str) -> str:
    return next(s.name for s in SPECS if s.kind == kind and s.default)


def find_spec(name: str, kind: str | None = None) -> ModelSpec | None:
    """The spec for a registry name, alias or hub id (case, '-' and '_' ignored), or None."""
    spec = _BY_KEY.get(_key(name))
    if spec is not None and kind is not None and kind not in spec.kinds:
        return None
    return spec


def get_spec(name: str, kind: str | None = None) -> ModelSpec:
    """Like `find_spec`, but an unknown name is a ModelError that lists the valid names."""
    spec = find_spec(name, kind)
    if spec is None:
        names = ", ".join(s.name for s in list_specs(kind))
        what = f"{kind} model" if kind else "model"
        raise UnknownModelError(f"unknown {what} {name!r}; known names: {names} (or give a local path)")
    return spec


def canonical_name(name: str, kind: str | None = None) -> str:
    return get_spec(name, kind).name


def cache_dir() -> Path:
    """Where URL-hosted checkpoint files are kept (``$SAMTRACK_CACHE`` or ``~/.cache/samtrack``)."""
    return Path(os.environ.get("SAMTRACK_CACHE", Path.home() / ".cache" / "samtrack")).expanduser()


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("SAMTRACK_OFFLINE", "HF_HUB_OFFLINE"))


def _local_path(name_or_path: str) -> Path | None:
    p = Path(name_or_path).expanduser()
    looks_like_path = os.sep in name_or_path or name_or_path.startswith(".") or p.suffix in (".pth", ".pt")
    if p.exists():
        return p
    if looks_like_path and find_spec(name_or_path) is None and not _is_hub_id(name_or_path):
        raise ModelError(f"model path {p} does not exist")
    return None


def _is_hub_id(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text) is not None and not Path(text).exists()


def config_model_type(directory: str | Path) -> str | None:
    """The ``model_type`` of a directory saved with ``save_pretrained`` (None: no readable config.json)."""
    try:
        value = json.loads((Path(directory) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def file_path(spec: ModelSpec) -> Path:
    """The cache location of a URL-hosted model's file."""
    if spec.filename is None:
        raise ModelError(f"{spec.name} is a hub model ({spec.hub_id}); it has no single checkpoint file")
    return cache_dir() / spec.filename


def _hub_snapshot(hub_id: str) -> Path | None:
    """The cached snapshot directory of a hub model if its config and weights are there."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(hub_id, "config.json")
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent
    if any(any(snapshot.glob(p)) for p in _WEIGHT_PATTERNS):
        return snapshot
    return None


def is_cached(spec: ModelSpec) -> bool:
    if spec.hub_id:
        return _hub_snapshot(spec.hub_id) is not None
    path = file_path(spec)
    return path.is_file() and (spec.size is None or path.stat().st_size == spec.size)


def _missing_message(spec: ModelSpec, reason: str) -> str:
    if spec.hub_id:
        cache = _hf_cache_location()
        folder = "models--" + spec.hub_id.replace("/", "--")
        where = f"the Hugging Face cache ({cache})"
        manual = (f"or copy the folder {folder} from another machine's hub cache into {cache}, or pass a local "
                  f"directory saved with save_pretrained (a copy of hub repo {spec.hub_id})")
    else:
        where = str(file_path(spec))
        manual = f"or download {spec.url} yourself and put it at {file_path(spec)}, or pass the file's path"
    gate = (f" ({spec.hub_id} is gated: accept its license at https://huggingface.co/{spec.hub_id} and log in "
               "with `hf auth login` or HF_TOKEN first)") if spec.gated else ""
    return (f"weights for {spec.name} are not in {where} and {reason}. "
            f"Fetch them with `samtrack download {spec.name}`{gate} on a machine with internet access, {manual}.")


def _hf_cache_location() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def resolve_pretrained(name_or_path: str, kind: str) -> str:
    """A directory (or cached hub snapshot) that ``from_pretrained`` can load, downloading on first use."""
    local = _local_path(name_or_path)
    if local is not None:
        if not local.is_dir():
            raise ModelError(f"{local} is a file; a {kind} model needs a directory saved with save_pretrained "
                             "(or a registry name, see `samtrack models`)")
        return str(local)
    spec = find_spec(name_or_path, kind)
    if spec is None:
        if _is_hub_id(name_or_path):  # any hub repo id is accepted as is
            spec = ModelSpec(name_or_path, kind, "hub", "hub model", 0, hub_id=name_or_path)
        else:
            get_spec(name_or_path, kind)  # raises with the list of names
    if spec.hub_id is None:
        return str(resolve_file(spec.name, kind))
    snapshot = _hub_snapshot(spec.hub_id)
    if snapshot is not None:
        return str(snapshot)
    if offline():
        raise ModelError(_missing_message(spec, "downloads are off (HF_HUB_OFFLINE/SAMTRACK_OFFLINE is set)"))
    return str(download(spec.name, kind=kind))


def resolve_file(name_or_path: str, kind: str) -> Path:
    """A local checkpoint file for a URL-hosted model (or a given path), downloading on first use."""
    local = _local_path(name_or_path)
    if local is not None:
        if not local.is_file():
            raise ModelError(f"{local} is not a checkpoint file")
        return local
    spec = get_spec(name_or_path, kind)
    if spec.hub_id is not None:
        raise ModelError(f"{spec.name} is a hub model ({spec.hub_id}), not a single checkpoint file")
    path = file_path(spec)
    if is_cached(spec):
        return path
    if offline():
        raise ModelError(_missing_message(spec, "downloads are off (SAMTRACK_OFFLINE/HF_HUB_OFFLINE is set)"))
    return download(spec.name, kind=kind)


def download(name: str, kind: str | None = None, progress: bool = True) -> Path:
    """Fetch a model into its cache (hub snapshot, or checked file). Returns the local path."""
    spec = get_spec(name, kind)
    try:
        if spec.hub_id:
            return _download_hub(spec, progress)
        return _download_url(spec, progress)
    except ModelError:
        raise
    except Exception as exc:  # network errors come in many types (urllib, httpx, hub errors)
        if spec.gated and _is_access_denied(exc):
            raise ModelError(gated_message(spec)) from exc
        raise ModelError(_missing_message(spec, f"the download failed ({type(exc).__name__}: {exc})")) from exc


def _is_access_denied(exc: Exception) -> bool:
    """The hub refused the files: no token, or a token whose account has not accepted the license."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    if isinstance(exc, GatedRepoError):
        return True
    response = getattr(exc, "response", None) if isinstance(exc, HfHubHTTPError) else None
    return getattr(response, "status_code", None) in (401, 403)


def gated_message(spec: ModelSpec) -> str:
    """What to do to download a gated hub model (SAM 3): accept its license, then give a token."""
    from huggingface_hub import get_token

    page = f"https://huggingface.co/{spec.hub_id}"
    token = ("no Hugging Face token was found" if get_token() is None
             else "your Hugging Face token (HF_TOKEN or `hf auth login`) has no access to it yet")
    return (f"{spec.name} ({spec.hub_id}) is a gated model and {token}. Accept its license at {page} while "
            f"logged in to your Hugging Face account, then give samtrack that account's token with "
            f"`hf auth login` (or set HF_TOKEN=hf_... in the environment), and run `samtrack download "
            f"{spec.name}` again.")


def _check_reachable(url: str) -> None:
    """Fail fast (not after the hub client's minute of retries) when the host cannot be reached."""
    host = urllib.parse.urlsplit(url).hostname or url
    try:
        socket.create_connection((host, 443), timeout=10).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach {host}: {exc}") from exc


def _download_hub(spec: ModelSpec, progress: bool) -> Path:
    from huggingface_hub import HfApi, constants, snapshot_download

    _check_reachable(constants.ENDPOINT)
    files = HfApi().list_repo_files(spec.hub_id)
    # One weights format only: safetensors when the repo has them, else PyTorch .bin (loaded safely).
    weights = "*.safetensors" if any(f.endswith(".safetensors") for f in files) else "*.bin"
    path = snapshot_download(spec.hub_id, allow_patterns=[*_META_PATTERNS, weights])
    del progress  # the hub client shows its own progress bars (HF_HUB_DISABLE_PROGRESS_BARS turns them off)
    return Path(path)


def _download_url(spec: ModelSpec, progress: bool) -> Path:
    assert spec.url is not None
    target = file_path(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    request = urllib.request.Request(spec.url, headers={"User-Agent": "samtrack"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response, open(part, "wb") as out:
            total = spec.size or int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=spec.filename, disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        size = part.stat().st_size
        if spec.size is not None and size != spec.size:
            raise ModelError(f"download of {spec.name} from {spec.url} is {size} bytes, expected {spec.size}; "
                             f"try `samtrack download {spec.name}` again")
        if spec.sha256 is not None and digest.hexdigest() != spec.sha256:
            raise ModelError(f"download of {spec.name} from {spec.url} has sha256 {digest.hexdigest()}, expected "
                             f"{spec.sha256}; the file was discarded, try again")
        if spec.sha256 is None and size < 1 << 20 and part.read_bytes()[:15].lower().startswith(b"<!doctype html"):
            raise ModelError(f"{spec.url} returned a web page instead of the {spec.name} checkpoint "
                             "(download quota or a changed link); download it in a browser and pass its path")
        shutil.move(part, target)  # rename: the final name only ever holds a complete file
    finally:
        part.unlink(missing_ok=True)
    return target


def ensure_available(names_and_kinds: list[tuple[str, str]]) -> None:
    """Make sure the weights of several models are at hand (downloading what is missing), and report
    what is missing in one message rather than one model at a time as each loads. An unknown name is
    reported first, alone: it is a mistake in the command, not a missing download."""
    for name, kind in names_and_kinds:
        if not Path(name).expanduser().exists() and not _is_hub_id(name):
            get_spec(name, kind)  # UnknownModelError, with the names there are
    wrong: list[str] = []  # files that are not the checkpoint they should be
    missing: list[tuple[str, str]] = []  # (model, why) for weights neither here nor downloadable
    for name, kind in names_and_kinds:
        local = Path(name).expanduser()
        if local.is_file():
            try:
                check_checkpoint_file(local, kind)  # a wrong file is refused before any model is built
            except ModelError as exc:
                wrong.append(str(exc).rstrip("."))
            continue
        if local.exists():
            continue  # a directory: its loader checks it
        spec = find_spec(name)
        try:
            if spec is None or spec.hub_id:
                resolve_pretrained(name, spec.kind if spec else kind)
            else:
                resolve_file(name, spec.kind)
        except ModelError as exc:
            missing.append((spec.name if spec else name, str(exc)))
    if len(missing) > 1:
        names = [n for n, _ in missing]
        wrong.append(f"the weights of {', '.join(names[:-1])} and {names[-1]} are not on this machine and could not "
                     f"be fetched; run `samtrack download {' '.join(names)}` where there is internet access (then "
                     "copy its caches here), or pass local paths. For each: "
                     f"`samtrack download {names[0]}` (it names the file and where it goes)")
    elif missing:
        wrong.append(missing[0][1].rstrip("."))
    if wrong:
        raise ModelError("; ".join(wrong) + ".")
