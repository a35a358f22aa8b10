"""Imported once by the fork server of the job processes (jobs/spawned.py), so that each job starts
with the dashboard and model code already loaded. Imports only: no threads, files or databases."""
import importlib

import app  # noqa: F401
from callbacks import FEATURES

for _name in FEATURES:
    importlib.import_module(f"callbacks.{_name}")

try:  # the jobs' own heavy imports (a few seconds each time otherwise)
    import precompute.models  # noqa: F401
    import precompute.pipeline  # noqa: F401
    import transformers  # noqa: F401
except Exception:  # noqa: BLE001 - optional speed-up only
    pass
