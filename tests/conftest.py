"""Shared test fixtures: paths to the real data beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
DAVIS = DATA / "davis2016"
DEAOT_FIXTURES = SHARED / "fixtures" / "deaot"


def davis_frames(seq: str) -> Path:
    return DAVIS / "JPEGImages" / "480p" / seq


def davis_annotations(seq: str) -> Path:
    return DAVIS / "Annotations" / "480p" / seq


@pytest.fixture(scope="session")
def davis_root() -> Path:
    if not DAVIS.is_dir():
        pytest.fail(f"real data missing: {DAVIS} (CI runs with ../shared beside the repo)")
    return DAVIS


@pytest.fixture(scope="session")
def blackswan_mp4() -> Path:
    return DATA / "videos" / "blackswan.mp4"
