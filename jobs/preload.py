"""Imported once by the fork server of the job processes (jobs/spawned.py), so that each job starts
with the model code already loaded (the background callbacks' own modules are preloaded beside it,
named by the manager). Imports only: no threads, files or databases."""
import logging

try:  # the jobs' own heavy imports (a few seconds each time otherwise)
    import precompute.models  # noqa: F401
    import precompute.pipeline  # noqa: F401
    import transformers  # noqa: F401
except Exception:  # noqa: BLE001 - optional speed-up only: each job imports what it needs itself
    logging.getLogger("atlas.jobs").warning("the job fork server could not preload the model code", exc_info=True)
