"""The Celery worker of the team deployment (``ATLAS_REDIS_URL`` set):

    celery -A jobs.worker worker --pool=solo --loglevel=INFO      # one job at a time per worker
    atlas worker                                                   # the same

It makes the Celery app from the same ATLAS_* settings as the web server (environment and/or
ATLAS_CONFIG) with the one task every background callback goes through (jobs/celery_app.py): the
callback is imported by the name the web server sends and run with these settings — the worker never
builds the Dash app. The worker must see the same store (ATLAS_CACHE) and jobs directory
(ATLAS_JOBS_DIR: the registry and uploaded corpora) as the web server, and the project must be
installed (``pip install -e .``; the pipeline's own worker processes import it too). Run several
workers for several simultaneous jobs.
"""
from __future__ import annotations

from attention_atlas.settings import SettingsError, load_settings, setup_logging
from jobs.celery_app import make_celery

try:
    settings = load_settings()
except SettingsError as exc:
    raise SystemExit(f"error: {exc}") from None
if not settings.redis_url:
    raise SystemExit("error: the Celery worker needs ATLAS_REDIS_URL (e.g. redis://localhost:6379/0), the same "
                     "as the web server's; without it the web server runs jobs itself (DiskcacheManager)")
setup_logging(settings.log_level)
import jobs.preload  # noqa: E402, F401 - the model code, loaded once before the first job
celery_app = make_celery(settings.redis_url, settings)
app = celery_app  # what `celery -A jobs.worker` looks up
