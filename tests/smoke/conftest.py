"""The smoke tests run Home Assistant as a separate process, not the test harness's ``hass``."""

from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> Generator[None]:
    """Override the package-wide fixture: it would build an in-process ``hass`` for nothing."""
    yield
