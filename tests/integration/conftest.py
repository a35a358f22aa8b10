"""The integration tests (tests/integration/): the real packaged models, the CLI in subprocesses,
gunicorn and Celery/Redis on loopback, kill-and-resume, the wheel, Docker (test_docker.py, also
marked ``docker``). Every test here is marked ``integration``."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)
