"""The Dash background-callback manager chosen by the settings.

Locally (no ``redis_url``): ``DiskcacheManager`` on a diskcache directory beside the store (results,
progress), jobs run in child processes on this machine. Team deployment (``redis_url`` set):
``CeleryManager`` with Redis as broker and result backend; a Celery worker
(``celery -A jobs.worker worker --pool=solo``) runs the jobs.

A background callback is a plain module-level function taking the settings first (jobs/background.py);
the managers remember it by name, and a job process imports and runs it by that name: it never builds
the Dash app. Both are thin subclasses that know the job registry (jobs/registry.py):

- diskcache: jobs run in children of a fork server, not in forks of the (threaded) web process, whose
  copied locks can hang a child (jobs/spawned.py); the fork server preloads the callbacks' modules;
- Celery: the web process queues one generic task (jobs/celery_app.py, ``RUN_TASK``) naming the
  function; the worker (jobs/worker.py) needs no Dash app either;
- cancelling (the page's Cancel button, or a newer job replacing an old one) first sets the job's
  cancel flag, which the job checks at every batch and head and obeys by stopping between two store
  writes; only if it has not stopped after a short grace is it killed (diskcache: the process tree;
  Celery: revoke/terminate). Either way the store stays consistent and the run resumable.
- Celery: a job the registry knows has ended (its worker was SIGKILLed, say) is not "running" any
  more even though Redis never got a result, so the page stops waiting for it; a Redis outage while
  the page polls is "no news yet" instead of an error (the job itself goes on in its worker).
"""
from __future__ import annotations

import logging
import time

from attention_atlas.core import runtime
from attention_atlas.settings import Settings
from jobs.background import bind, body_ref, run_callback

log = logging.getLogger("atlas.jobs")
CANCEL_GRACE_S = 4.0
BROKER_WARN_EVERY_S = 60.0


def _cancel_in_registry(jobs_path, job) -> dict | None:
    """Set the cancel flag of the job behind a manager handle; wait (briefly) for it to stop.
    Returns the job's registry view afterwards (None if the registry does not know the handle)."""
    from jobs.registry import ACTIVE, REGISTRY_ERRORS, Registry

    try:
        reg = Registry(jobs_path)
    except REGISTRY_ERRORS as exc:
        log.warning("job registry unreachable while cancelling a job (%s): %s", exc.__class__.__name__, exc)
        return None
    try:
        e = reg.by_handle(job)
        if e is None or e["state"] not in ACTIVE:
            return e
        reg.request_cancel(e["id"])
        end = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < end:
            e = reg.get(e["id"])
            if e["state"] not in ACTIVE:
                return e
            time.sleep(0.1)
        return e
    finally:
        reg.close()


def _finalise(jobs_path, job_id) -> None:
    """After a hard stop: record the job's end if it could not record it itself."""
    from jobs.registry import ACTIVE, Registry

    reg = Registry(jobs_path)
    try:
        for _ in range(20):  # the killed process may take a moment to be gone
            e = reg.get(job_id)
            if e is None or e["state"] not in ACTIVE:
                break
            time.sleep(0.1)
        reg.reap()
    finally:
        reg.close()


class JobQueueUnavailable(RuntimeError):
    """The Celery broker could not take the job; one line for the page."""


def _job_id_in(args):
    """The registry job id a background callback was started with (our jobs pass {"job": id})."""
    first = args[0] if isinstance(args, (list, tuple)) and args else args
    return first.get("job") if isinstance(first, dict) and isinstance(first.get("job"), str) else None


def _fail_queued(jobs_path, job_id, message) -> None:
    from jobs.registry import REGISTRY_ERRORS, Registry

    try:
        reg = Registry(jobs_path)
        try:
            reg.finish(job_id, "failed", message)
        finally:
            reg.close()
    except REGISTRY_ERRORS as exc:
        log.warning("job %s: its failure could not be recorded in the registry (%s)", job_id, exc.__class__.__name__)


def _job_context(modules):
    """multiprocess's fork-server context, its server preloading the model code (jobs/preload.py) and
    the modules of the background callbacks (named by the app that registered them); one per
    process (runtime.singleton)."""
    def make():
        import multiprocess

        try:
            ctx = multiprocess.get_context("forkserver")
            ctx.set_forkserver_preload(["jobs.preload", *sorted(modules)])
        except ValueError:  # a platform without fork servers (Windows): Dash's default
            ctx = None
        return ctx
    return runtime.singleton("jobs.forkserver-context", make)


class QueuedCallback:
    """What the Celery manager registers for a background callback: its name and whether it reports
    progress (the web process never runs it; a worker does, by name)."""

    def __init__(self, ref: str, progress: bool):
        self.ref, self.progress = ref, bool(progress)

    def __repr__(self) -> str:
        return f"QueuedCallback({self.ref!r})"


def make_manager(settings: Settings):
    jobs_path = settings.jobs_path
    if settings.redis_url:
        from dash import CeleryManager

        from jobs.celery_app import RUN_TASK, make_celery

        class AtlasCeleryManager(CeleryManager):
            # The calls below talk to the broker (Redis) and are the process's edge to it: Celery,
            # kombu and redis-py raise many unrelated types when it is down, so they are caught
            # broadly and logged (the page's polls: at most one line a minute).
            _warned_at = float("-inf")

            def _unreachable(self, what: str, exc: BaseException) -> None:
                now = time.monotonic()
                if now - self._warned_at >= BROKER_WARN_EVERY_S:
                    self._warned_at = now
                    log.warning("the job queue (Redis) did not answer while %s (%s: %s); the page keeps waiting",
                                what, exc.__class__.__name__, str(exc).splitlines()[0][:200] if str(exc) else "")

            def make_job_fn(self, fn, progress, key=None):
                return QueuedCallback(body_ref(fn), progress)

            def call_job_fn(self, key, job_fn, args, context):
                try:
                    task = self.handle.send_task(RUN_TASK, args=(job_fn.ref, job_fn.progress, key,
                                                                 self._make_progress_key(key), args, context))
                    return task.task_id
                except Exception as exc:  # noqa: BLE001 - broker unreachable: say so, fail the job clearly
                    log.warning("could not queue a background job (%s)", exc.__class__.__name__)
                    job_id = _job_id_in(args)
                    if job_id:
                        _fail_queued(jobs_path, job_id, "the job queue (Redis) is unreachable, so the job was not "
                                                        "started: start it again once the admin has Redis back")
                    raise JobQueueUnavailable("the job queue (Redis) is unreachable: start the job again once "
                                              "it is back") from None

            def terminate_job(self, job):
                if job is None:
                    return
                _cancel_in_registry(jobs_path, job)
                try:
                    super().terminate_job(job)
                except Exception as exc:  # noqa: BLE001 - broker down: the cancel flag still stops the job
                    log.warning("could not send the terminate request to the workers (%s)", exc.__class__.__name__)

            def job_running(self, job):
                from jobs.registry import REGISTRY_ERRORS, TERMINAL, Registry

                try:
                    reg = Registry(jobs_path)
                    try:
                        e = reg.by_handle(job)
                    finally:
                        reg.close()
                    if e is not None and e["state"] in TERMINAL:
                        return False
                except REGISTRY_ERRORS as exc:  # ask the broker instead
                    log.warning("job registry unreachable (%s): asking the job queue", exc.__class__.__name__)
                try:
                    return super().job_running(job)
                except Exception as exc:  # noqa: BLE001 - Redis unreachable: keep waiting, the job runs on
                    self._unreachable("asking whether a job runs", exc)
                    return True

            def get_progress(self, key):
                try:
                    return super().get_progress(key)
                except Exception as exc:  # noqa: BLE001 - broker edge (above)
                    self._unreachable("reading a job's progress", exc)
                    return None

            def result_ready(self, key):
                try:
                    return super().result_ready(key)
                except Exception as exc:  # noqa: BLE001 - broker edge (above)
                    self._unreachable("asking whether a job's result is ready", exc)
                    return False

            def get_result(self, key, job):
                try:
                    return super().get_result(key, job)
                except Exception as exc:  # noqa: BLE001 - broker edge (above)
                    self._unreachable("reading a job's result", exc)
                    return self.UNDEFINED

            def get_updated_props(self, key):
                try:
                    return super().get_updated_props(key)
                except Exception as exc:  # noqa: BLE001 - broker edge (above)
                    self._unreachable("reading a job's page updates", exc)
                    return {}

        return AtlasCeleryManager(make_celery(settings.redis_url, settings), expire=24 * 3600)

    import diskcache
    from dash import DiskcacheManager

    class AtlasDiskcacheManager(DiskcacheManager):
        def __init__(self, cache, expire=None):
            self.refs = {}  # registry key -> (module:qualname, progress); set before Dash registers anything
            super().__init__(cache, expire=expire)

        def make_job_fn(self, fn, progress, key=None):
            """Dash's job function around the callback with the settings bound (what runs if there is
            no fork server); the name is what a fork-server child imports instead."""
            self.refs[key] = (body_ref(fn), bool(progress))
            cache = self.handle

            def job_fn(result_key, progress_key, user_callback_args, context):
                run_callback(bind(fn, settings), progress, cache.set, result_key, progress_key,
                             user_callback_args, context)

            return job_fn

        def call_job_fn(self, key, job_fn, args, context):
            """Start the job in a child of the fork server, never a fork of this threaded process
            (see jobs/spawned.py); the returned pid is the handle Dash polls and terminates."""
            from jobs.spawned import run_spawned

            fn_key = next((k for k, f in self.func_registry.items() if f is job_fn), None)
            ref = self.refs.get(fn_key)
            ctx = _job_context({r.partition(":")[0] for r, _ in self.refs.values()})
            if ref is None or ctx is None:  # not one of ours / no fork server here: Dash's own fork
                return super().call_job_fn(key, job_fn, args, context)
            proc = ctx.Process(target=run_spawned, daemon=False,
                               args=(settings, ref[0], ref[1], self.handle.directory, key,
                                     self._make_progress_key(key), args, dict(context)))
            proc.start()
            return proc.pid

        def terminate_job(self, job):
            if job is None:
                return
            e = _cancel_in_registry(jobs_path, job)
            super().terminate_job(job)  # whatever is left of the process tree (SIGKILL)
            if e is not None:
                _finalise(jobs_path, e["id"])

    path = jobs_path / "background"
    path.mkdir(parents=True, exist_ok=True)
    return AtlasDiskcacheManager(diskcache.Cache(str(path)), expire=24 * 3600)
