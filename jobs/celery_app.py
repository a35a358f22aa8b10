"""The Celery application used by CeleryManager (broker and results in Redis).

Every background callback goes through one task, ``RUN_TASK``: its arguments name the callback
(``module:qualname``, jobs/background.py) and carry Dash's result/progress keys, inputs and context.
The worker imports the callback by name and runs it with the worker's settings; it needs no Dash app."""
from __future__ import annotations

RUN_TASK = "atlas.run_background_callback"


def make_celery(redis_url: str, settings=None):
    """The Celery app. ``settings``: what a worker binds to the callbacks it runs (the web process,
    which only queues tasks, passes its own)."""
    from celery import Celery

    app = Celery("attention_atlas", broker=redis_url, backend=redis_url)
    app.conf.update(broker_connection_retry_on_startup=True, task_acks_late=False,
                    # a job starts its own process pool for the per-head work: a prefork worker's children
                    # are daemonic and may not; the solo pool runs each job in the worker process itself
                    # (one job at a time per worker: run more workers for more simultaneous jobs)
                    worker_pool="solo",
                    worker_hijack_root_logger=False, result_expires=24 * 3600,
                    # one long job at a time per worker process: never reserve the next one early
                    worker_prefetch_multiplier=1, task_track_started=True,
                    # a worker loses its broker connection when Redis restarts: keep trying to reconnect
                    broker_connection_retry=True, broker_connection_max_retries=None,
                    # Redis unreachable when a job is submitted: say so within seconds instead of retrying for
                    # ~20 s while the page waits (the job registry, not Redis, is the record of how jobs end)
                    result_backend_transport_options={"retry_policy": {"max_retries": 3, "interval_start": 0,
                                                                       "interval_step": 0.5, "interval_max": 1}},
                    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5,
                                               "interval_max": 1})

    @app.task(name=RUN_TASK)
    def run_background_callback(ref, progress, result_key, progress_key, args, context=None):
        import json

        from _plotly_utils.utils import PlotlyJSONEncoder

        from jobs.background import bind, load_body, run_callback

        if settings is None:
            raise RuntimeError("this Celery app was made without settings: start workers with "
                               "`celery -A jobs.worker worker` (jobs/worker.py)")
        backend = app.backend

        def store(key, value):
            backend.set(key, json.dumps(value, cls=PlotlyJSONEncoder))

        run_callback(bind(load_body(ref), settings), progress, store, result_key, progress_key, args, context)

    return app
