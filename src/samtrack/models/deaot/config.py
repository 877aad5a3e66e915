"""Architecture of every released AOT/DeAOT variant, keyed by the registry's canonical names."""

from __future__ import annotations

from dataclasses import dataclass

from samtrack.errors import ModelError
from samtrack.models.registry import canonical_name

MOBILENET_DIMS = (24, 32, 96, 1280)
RESNET50_DIMS = (256, 512, 1024, 1024)
SWINB_DIMS = (128, 256, 512, 512)


@dataclass(frozen=True)
class VariantConfig:
    """What the official model config gives for one released checkpoint."""

    name: str            # canonical registry name, e.g. "r50-deaotl"
    official_name: str   # name in the official code / checkpoint files, e.g. "r50_deaotl"
    model: str           # "aot" or "deaot"
    encoder: str         # "mobilenetv2", "resnet50" or "swin_base"
    encoder_dims: tuple[int, int, int, int]
    num_layers: int      # LSTT / GPM blocks
    self_heads: int
    att_heads: int
    align_corners: bool  # False for the Swin variants
    embed_dim: int = 256
    max_obj_num: int = 10

    @property
    def decode_intermediate(self) -> bool:
        """AOT decodes the concatenation of every layer's output; DeAOT only the last one."""
        return self.model == "aot"


def _aot(name: str, official: str, encoder: str, dims: tuple[int, int, int, int], layers: int,
         align: bool = True) -> VariantConfig:
    return VariantConfig(name, official, "aot", encoder, dims, layers, 8, 8, align)


def _deaot(name: str, official: str, encoder: str, dims: tuple[int, int, int, int], layers: int,
           align: bool = True) -> VariantConfig:
    return VariantConfig(name, official, "deaot", encoder, dims, layers, 1, 1, align)


VARIANTS: dict[str, VariantConfig] = {v.name: v for v in (
    _aot("aot-t", "aott", "mobilenetv2", MOBILENET_DIMS, 1),
    _aot("aot-s", "aots", "mobilenetv2", MOBILENET_DIMS, 2),
    _aot("aot-b", "aotb", "mobilenetv2", MOBILENET_DIMS, 3),
    _aot("aot-l", "aotl", "mobilenetv2", MOBILENET_DIMS, 3),
    _aot("r50-aotl", "r50_aotl", "resnet50", RESNET50_DIMS, 3),
    _aot("swinb-aotl", "swinb_aotl", "swin_base", SWINB_DIMS, 3, align=False),
    _deaot("deaot-t", "deaott", "mobilenetv2", MOBILENET_DIMS, 1),
    _deaot("deaot-s", "deaots", "mobilenetv2", MOBILENET_DIMS, 2),
    _deaot("deaot-b", "deaotb", "mobilenetv2", MOBILENET_DIMS, 3),
    _deaot("deaot-l", "deaotl", "mobilenetv2", MOBILENET_DIMS, 3),
    _deaot("r50-deaotl", "r50_deaotl", "resnet50", RESNET50_DIMS, 3),
    _deaot("swinb-deaotl", "swinb_deaotl", "swin_base", SWINB_DIMS, 3, align=False),
)}


def get_variant(name: str) -> VariantConfig:
    """Look a variant up by registry name or alias (``r50_deaotl``, ``deaott``, ``deaot-t``...)."""
    canonical = canonical_name(name, kind="tracker")
    if canonical not in VARIANTS:
        raise ModelError(f"{canonical!r} is not an AOT/DeAOT tracker; choose one of: {', '.join(VARIANTS)}")
    return VARIANTS[canonical]
