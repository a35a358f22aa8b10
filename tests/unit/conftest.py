"""The unit tests (tests/unit/): pure functions on small synthetic data (tests/store_fixture.py), no
model weights, subprocess, server or browser; the whole directory runs in well under a minute.
Every test here is marked ``unit``."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.unit)
