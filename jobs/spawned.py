"""The processes in which DiskcacheManager runs background callbacks (laptop / single-server mode).

Dash's DiskcacheManager forks the web process for every background callback. A web server is
multi-threaded, and a fork copies whatever locks other threads hold at that instant — SQLite's
memory mutex included, which the store and the job registry use all the time — so the child can
hang forever on its first database access. We start the children from a fork server instead
(``multiprocess``'s ``forkserver`` context): a clean, single-threaded process started once, which has
imported the model code (``jobs.preload``) and the modules of the background callbacks but never
touched a database, and forks a fresh child per job. The child imports the callback by name
(jobs/background.py), binds the settings and runs it, writing progress and result to the manager's
diskcache directory: it never builds the Dash app.
"""
from __future__ import annotations


def run_spawned(settings, ref: str, progress: bool, cache_dir: str, result_key: str, progress_key: str, args,
                context) -> None:
    import diskcache

    from jobs.background import bind, load_body, run_callback

    cache = diskcache.Cache(cache_dir)
    try:
        fn = load_body(ref)
    except (ImportError, AttributeError):
        cache.set(result_key, {"background_callback_error": {
            "msg": f"this background task ({ref}) is unknown to the job process (the server code changed?): "
                   "reload the page", "tb": ""}})
        return
    run_callback(bind(fn, settings), progress, cache.set, result_key, progress_key, args, context)
