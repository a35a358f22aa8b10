"""The Celery worker of the team deployment (``ATLAS_REDIS_URL`` set):

    celery -A jobs.worker worker --pool=solo --loglevel=INFO      # one job at a time per worker

It builds the same Dash app as the web server, from the same ATLAS_* settings (environment and/or
ATLAS_CONFIG), so that the app's background callbacks are registered as Celery tasks here under
the same names. The worker must see the same store (ATLAS_CACHE) and jobs directory
(ATLAS_JOBS_DIR: the registry and uploaded corpora) as the web server. Run several workers for
several simultaneous jobs.
"""
from __future__ import annotations

import sys
from pathlib import Path

# `celery -A` puts the working directory on sys.path only while it imports this module (and then
# removes one copy of it); the pipeline's own worker processes (forkserver) need the project
# importable for good, so add a copy of our own
sys.path.append(str(Path(__file__).resolve().parent.parent))

from app import create_app, setup_logging  # noqa: E402
from settings import SettingsError, load_settings  # noqa: E402

try:
    settings = load_settings()
except SettingsError as exc:
    raise SystemExit(f"error: {exc}") from None
if not settings.redis_url:
    raise SystemExit("error: the Celery worker needs ATLAS_REDIS_URL (e.g. redis://localhost:6379/0), the same "
                     "as the web server's; without it the web server runs jobs itself (DiskcacheManager)")
setup_logging(settings.log_level)
dash_app = create_app(settings=settings)
celery_app = dash_app._background_manager.handle  # noqa: SLF001 - the CeleryManager's Celery app
app = celery_app  # what `celery -A jobs.worker` looks up
