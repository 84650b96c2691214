from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _vectors_dir() -> Path:
    """The official test vectors live beside the clone, in ../shared/vectors (never copied in)."""
    override = os.environ.get("SAGEBIDI_VECTORS")
    return Path(override) if override else ROOT.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    path = _vectors_dir()
    if not path.is_dir():
        pytest.fail(f"test vectors not found at {path} (set SAGEBIDI_VECTORS)")
    return path
