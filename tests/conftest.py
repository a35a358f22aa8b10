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
