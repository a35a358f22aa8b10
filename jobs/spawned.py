"""The processes in which DiskcacheManager runs background callbacks (laptop / single-server mode).

Dash's DiskcacheManager forks the web process for every background callback. A web server is
multi-threaded, and a fork copies whatever locks other threads hold at that instant — SQLite's
memory mutex included, which the store and the job registry use all the time — so the child can
hang forever on its first database access. We start the children from a fork server instead
(``multiprocess``'s ``forkserver`` context): a clean, single-threaded process started once, which has
imported the dashboard and model code (``jobs.preload``) but never touched a database, and forks
a fresh child per job. The child builds the same app from the same settings, which registers the
same background functions under the same keys (exactly what a Celery worker does), and runs the
one it was asked for.
"""
from __future__ import annotations

_APPS: dict = {}


def run_spawned(settings, fn_key: str, result_key: str, progress_key: str, args, context) -> None:
    from app import create_app

    app = _APPS.get(settings)
    if app is None:
        app = _APPS[settings] = create_app(settings=settings)
    job_fn = app._background_manager.func_registry.get(fn_key)  # noqa: SLF001
    if job_fn is None:
        app._background_manager.handle.set(result_key, {"background_callback_error": {
            "msg": "this background task is unknown to the job process (the server code changed?): reload the page",
            "tb": ""}})
        return
    job_fn(result_key, progress_key, args, context)
