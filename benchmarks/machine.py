"""Helpers shared by the benchmarks: the machine's measured matmul speed and the tests' tiny SAM."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(n: int = 1024, repeats: int = 10, dtype: str = "float32") -> float:
    """GFLOP/s of the best of `repeats` n×n matrix products (all threads): the machine's speed now.

    torch is imported here so that a benchmark timing its own imports is not charged for it."""
    import torch

    from samtrack.models.common import best_matmul_seconds

    return 2 * n**3 / best_matmul_seconds(getattr(torch, dtype), n, repeats) / 1e9


def tiny_sam(folder: Path) -> str:
    """The test suite's tiny random SAM, saved under `folder` once; returns its directory."""
    out = folder / "tiny-sam"
    if not (out / "config.json").exists():
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import save_tiny_sam

        save_tiny_sam(out)
    return str(out)
