"""The integration tests (tests/integration/): the real packaged models, the CLI in subprocesses,
gunicorn and Celery/Redis on loopback, kill-and-resume, the wheel, Docker (test_docker.py, also
marked ``docker``). Every test here is marked ``integration``."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------- the packaged models, loaded once
# One adapter per packaged model for the whole session (tests.integration.helpers.adapter caches
# them), shared by every module that only runs them: test_ablation.py, test_models_faithfulness.py,
# test_pairs.py (and, through helpers.adapter, test_neuron_rollout.py and test_own_input.py).
# Ablation hooks are context managers that restore the model; no test changes an adapter.
@pytest.fixture(scope="session")
def minilm():
    from tests.integration.helpers import adapter
    return adapter("minilm")


@pytest.fixture(scope="session")
def smollm2():
    from tests.integration.helpers import adapter
    return adapter("smollm2")


@pytest.fixture(scope="session")
def dinov2():
    from tests.integration.helpers import adapter
    return adapter("dinov2-small")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)
