"""Shared fixtures for the smartmeter tests."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def corpus_dir() -> Path:
    """The shared corpus of real meter samples (../shared/corpus, or /shared/corpus in the chroot)."""
    for candidate in (ROOT.parent / "shared" / "corpus", Path("/shared/corpus")):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("../shared/corpus not found beside the project")


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> Generator[None]:
    """Enable custom integrations in every test."""
    yield
