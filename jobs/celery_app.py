"""The Celery application used by CeleryManager (broker and results in Redis)."""
from __future__ import annotations


def make_celery(redis_url: str):
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
    return app
