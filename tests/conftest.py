"""The test suite, in three directories (pytest.ini: testpaths = tests):

- tests/unit/         pure functions on small synthetic data: no model weights, no subprocess,
                      server or browser; the quick loop (``pytest tests/unit``);
- tests/integration/  real packaged models, the CLI in subprocesses, gunicorn, Celery/Redis,
                      kill-and-resume, Docker (marked ``docker``), the wheel;
- tests/browser/      the dashboard in headless Debian Chromium (Selenium).

Each directory's conftest.py marks its tests ``unit``, ``integration`` or ``browser``
(``pytest -m "not browser"``…). No test module imports another: helpers shared by more than one
directory are in tests/helpers.py (view state, tiny random models) and tests/store_fixture.py (the
synthetic store); the others in tests/<directory>/helpers.py. Fixtures used by one directory only
live in its conftest.py (the browser's driver, servers and real runs: tests/browser/conftest.py).
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest

# the session fixtures (tests/browser/conftest.py) whose real precompute runs are built once per test process
REAL_RUNS = ("real_store", "big_store")


@functools.lru_cache(maxsize=None)
def uses_real_runs(path: Path) -> bool:
    """Whether a test file asks for the session's real precompute runs (by fixture name)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    return any(name in text for name in REAL_RUNS)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` (scripts/test.sh runs the suite in two pytest-xdist processes) with these
    groups: each test file is one group, so its module fixtures are built once and its tests keep
    their order (some check what the earlier ones left, e.g. the browser's console errors); every
    file that uses the real precompute runs joins one group, so those runs are built in one process
    only. (pytest-xdist's own xdist_group marks do not reach its scheduler under pytest 9.2: it
    renames ``item._nodeid``, which pytest no longer reads.) Groups go out largest first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "real-runs" if uses_real_runs(config.rootpath / path) else path

    return FileGroups(config, log)
