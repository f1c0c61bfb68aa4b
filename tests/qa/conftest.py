"""Fixtures for the answering layer: an Engine over the small fixture index."""

from __future__ import annotations

import pytest
from carqa.qa.engine import Engine


@pytest.fixture(scope="session")
def engine(small_index) -> Engine:
    """Extractive engine over the invented CAR T corpus (shared: loading is the slow part)."""
    return Engine(small_index)
