"""The Celery application used by CeleryManager (broker and results in Redis)."""
from __future__ import annotations


def make_celery(redis_url: str):
    from celery import Celery

    app = Celery("attention_atlas", broker=redis_url, backend=redis_url)
    app.conf.update(broker_connection_retry_on_startup=True, task_acks_late=False,
                    worker_hijack_root_logger=False, result_expires=24 * 3600)
    return app
