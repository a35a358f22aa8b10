"""The Dash background-callback manager chosen by the settings.

Locally (no ``redis_url``): ``DiskcacheManager`` on a diskcache directory beside the store, jobs
run in processes forked by the web process. Team deployment (``redis_url`` set): ``CeleryManager``
with Redis as broker and result backend; a Celery worker (``celery -A jobs.worker worker``) runs
the jobs."""
from __future__ import annotations

from settings import Settings


def make_manager(settings: Settings):
    if settings.redis_url:
        from jobs.celery_app import make_celery
        from dash import CeleryManager

        return CeleryManager(make_celery(settings.redis_url), expire=24 * 3600)
    import diskcache
    from dash import DiskcacheManager

    path = settings.jobs_path / "background"
    path.mkdir(parents=True, exist_ok=True)
    return DiskcacheManager(diskcache.Cache(str(path)), expire=24 * 3600)
