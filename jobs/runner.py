"""One precompute job started from the UI: checks its parameters, runs the real pipeline into the
configured store, reports progress (to the starter's progress bar and to the shared registry) and
records how it ended. The same function runs under either background manager: in a process the
web server forks (DiskcacheManager) or in a Celery worker (CeleryManager).

Nothing here is mocked or special for the UI: it is ``precompute.pipeline.Run`` with a progress
factory that also answers cancellation (a flag in the registry, checked at every batch and head),
so a cancelled job stops between two store writes and the run stays resumable.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time

from jobs.paths import PathRefused, check_corpus, check_model
from jobs.registry import HEARTBEAT_S, REGISTRY_ERRORS, Registry

log = logging.getLogger("atlas.jobs")

VARIANTS = ("translated", "raw", "translated-scaled", "raw-scaled")


class JobInvalid(ValueError):
    """Parameters a job cannot run with; one line naming the fix."""


class JobCancelled(Exception):
    """Raised inside the pipeline when the job's cancel flag is set."""


# ------------------------------------------------------------------ parameters
def validate_params(params: dict, settings) -> dict:
    """Checked, normalised parameters; PathRefused / JobInvalid (one line) otherwise.

    Run in the web process when the user presses Start (immediate feedback) and again in the job
    (the worker applies its own roots and limits)."""
    from precompute.projections import ALL_METHODS, DIMS
    from precompute.selection import SelectionError, check_index_syntax, parse_choices

    p = dict(params or {})
    out = {"model": check_model(p.get("model"), settings), "corpus": check_corpus(p.get("corpus"), settings)}
    try:
        out["projections"] = parse_choices(",".join(p.get("projections") or []) or "pca", ALL_METHODS, "projection")
        out["dims"] = parse_choices(",".join(str(d) for d in (p.get("dims") or [])) or "2", DIMS, "dimension")
        out["variants"] = parse_choices(",".join(p.get("variants") or []) or "translated", VARIANTS, "variant")
        for key, what in (("layers", "layer"), ("heads", "head")):
            text = str(p.get(key) or "").strip()
            if text and text != "all":
                check_index_syntax(text, what)  # syntax and a sane bound now; the model's range once it is loaded
            out[key] = text or None
    except SelectionError as exc:
        raise JobInvalid(str(exc)) from None
    cap = int(settings.job_max_tokens)
    mt = p.get("max_tokens")
    if mt in (None, ""):
        out["max_tokens"] = cap
    else:
        try:
            mt = int(mt)
        except (TypeError, ValueError):
            raise JobInvalid(f"max tokens {mt!r} is not a whole number: give one between 1 and {cap}") from None
        if not 1 <= mt <= cap:
            raise JobInvalid(f"max tokens {mt} is outside 1–{cap} (this server's limit for runs started "
                             "from the page): lower it, or use the command line for bigger runs")
        out["max_tokens"] = mt
    column = str(p.get("text_column") or "").strip()
    if len(column) > 200:
        raise JobInvalid("text column name is too long: give the name of the column holding the text")
    out["text_column"] = column or None
    out["target_column"] = _target_column(p.get("target_column"), out)
    return out


def _target_column(value, out: dict) -> str | None:
    """The target column of an encoder–decoder run (None: the model generates each target, greedy,
    bounded — as the command line does); one-line JobInvalid when it cannot apply."""
    target = str(value or "").strip()
    if not target:
        return None
    if len(target) > 200:
        raise JobInvalid("target column name is too long: give the name of the column holding each input's target")
    if not str(out["corpus"]).lower().endswith((".csv", ".tsv")):
        raise JobInvalid("a target column needs a .csv corpus (or a .tsv with a header row): choose one, or leave "
                         "the target column empty to let the model generate the targets")
    if target == (out["text_column"] or "text"):
        raise JobInvalid(f"the target column {target!r} is the text column: name the column holding the targets")
    import json
    from pathlib import Path

    cfg = Path(str(out["model"])) / "config.json"
    try:
        enc_dec = cfg.is_file() and bool(json.loads(cfg.read_text(encoding="utf-8")).get("is_encoder_decoder"))
    except (OSError, ValueError):
        enc_dec = False
    if not enc_dec:
        raise JobInvalid(f"a target column is for encoder–decoder models (BART, mBART, Marian); {out['model']!s} is "
                         "not one: leave the target column empty")
    return target


# ------------------------------------------------------------------ progress
class _Bar:
    def __init__(self, reporter, total, desc):
        self.r, self.total, self.desc, self.n = reporter, max(0, int(total or 0)), str(desc), 0

    def __enter__(self):
        self.r._enter(self)
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        self.n += n
        self.r._tick(self)


class Reporter:
    """Progress factory for ``Run`` plus a heartbeat thread (registry) and a push thread (the Dash
    progress outputs). Pushing is best effort: a broker outage never stops the computation."""

    def __init__(self, registry: Registry, job_id: str, set_progress=None):
        self.reg, self.job_id, self.set_progress = registry, job_id, set_progress
        self.fields = {"progress": 0.02, "stage": "loading corpus and model"}
        self.heads_total = None
        self.heads_base = 0
        self._last_cancel_check = 0.0
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._beat_loop, daemon=True, name="atlas-job-heartbeat")]
        if set_progress is not None:
            self._threads.append(threading.Thread(target=self._push_loop, daemon=True, name="atlas-job-progress"))
        self._pushed = None

    # the factory Run calls: progress(total=..., desc=..., unit=...)
    def progress(self, total=None, desc="", unit="", **_):
        return _Bar(self, total, desc)

    def on_manifest(self, run_id: str, manifest: dict):
        from attention_atlas.core.runinfo import RunInfo
        self.heads_total = RunInfo.from_manifest(manifest).n_heads_total
        self.reg.update(self.job_id, state_change=True, run_id=run_id, heads_total=self.heads_total)

    def start(self):
        for t in self._threads:
            t.start()

    def stop(self):
        self._stop.set()
        self._changed.set()
        for t in self._threads:
            t.join(timeout=5)

    def set(self, **fields):
        with self._lock:
            self.fields.update(fields)
        self._changed.set()

    # ---- stage bookkeeping
    def _enter(self, bar):
        if bar.desc.startswith("projections") and self.heads_total:
            self.heads_base = max(0, self.heads_total - bar.total)
        self._tick(bar)

    def _tick(self, bar):
        if bar.desc.startswith("forward"):
            frac = 0.05 + 0.25 * (bar.n / bar.total if bar.total else 1.0)
            self.set(progress=frac, stage=f"forward passes {bar.n}/{bar.total} batches")
        else:
            total = self.heads_total or bar.total
            done = self.heads_base + bar.n
            frac = 0.3 + 0.7 * (done / total if total else 1.0)
            self.set(progress=frac, stage=f"projections {done}/{total} heads", heads_done=done)
        self.check_cancel()

    def check_cancel(self, force: bool = False):
        now = time.monotonic()
        if not force and now - self._last_cancel_check < 0.4:
            return
        self._last_cancel_check = now
        raw = self.reg._c.get(f"job/{self.job_id}")  # noqa: SLF001 - our own registry
        if raw is not None and raw.get("cancel_requested"):
            raise JobCancelled()

    # ---- threads
    def _beat_loop(self):
        last = 0.0
        while not self._stop.is_set():
            self._changed.wait(HEARTBEAT_S)
            if self._stop.is_set():
                break
            if time.monotonic() - last < 0.5:
                time.sleep(0.5 - (time.monotonic() - last))
            self._changed.clear()
            with self._lock:
                fields = dict(self.fields)
            try:
                self.reg.beat(self.job_id, **fields)
            except REGISTRY_ERRORS as exc:  # the registry is local disk; log and go on
                log.warning("job %s: heartbeat not recorded (%s)", self.job_id, exc.__class__.__name__)
            last = time.monotonic()

    def _push_loop(self):
        failing = False
        while not self._stop.wait(0.5):
            with self._lock:
                pct = round(100 * self.fields["progress"])
                value = (pct, f"{pct}% · {self.fields['stage']}")
            if value == self._pushed:
                continue
            try:
                self.set_progress(list(value))
                self._pushed = value
                if failing:
                    log.info("job %s: progress reaches the page again", self.job_id)
                failing = False
            except Exception as exc:  # noqa: BLE001 - edge to the manager's store (e.g. Redis down): the job goes on
                if not failing:
                    log.warning("job %s: progress not delivered to the page (%s); the job goes on",
                                self.job_id, exc.__class__.__name__)
                failing = True


def _make_run(cfg, reporter):
    from precompute.pipeline import Run

    class JobRun(Run):
        """The pipeline's Run, telling the registry its run id as soon as the manifest exists."""

        def _manifest(self, store, run_id, *args, **kwargs):
            manifest = super()._manifest(store, run_id, *args, **kwargs)
            reporter.on_manifest(run_id, manifest)
            return manifest

    return JobRun(cfg, progress=reporter.progress)


def current_handle() -> str:
    """The background manager's handle of this job: the Celery task id, else our pid."""
    if "celery" in sys.modules:
        try:
            from celery import current_task

            if current_task is not None and getattr(current_task.request, "id", None):
                return str(current_task.request.id)
        except (ImportError, AttributeError):  # not inside a Celery task after all
            pass
    return str(os.getpid())


_LOCKED = re.compile(r"run (\w+) is being written by another process \(pid (\S+) on ([^)]*)\)")


def _locked_message(reg: Registry, job_id: str, message: str) -> tuple[str, str | None]:
    m = _LOCKED.search(message)
    if not m:
        return message, None
    run_id, pid, host = m.group(1), m.group(2), m.group(3)
    for e in reg.entries():
        if e["id"] != job_id and e["state"] == "running" and str(e.get("pid")) == pid and e.get("host") == host:
            started = time.strftime("%H:%M:%S", time.localtime(e["started"] or e["created"]))
            return (f"run {run_id} is already running by job {e['id']} (started by {e['user']} at {started}): "
                    "wait for it to finish (its progress is in the list), or cancel it first", run_id)
    return (f"run {run_id} is already being written by another process (pid {pid} on {host}, e.g. the "
            "command line): wait for it to finish, then start this job again to complete it", run_id)


# ------------------------------------------------------------------ the job
def run_job(job_id: str, settings, set_progress=None) -> dict:
    """Run job ``job_id`` of the registry to its end; returns its final registry view."""
    from precompute.corpus import CorpusError
    from precompute.models.base import ModelLoadError
    from precompute.pipeline import RunConfig, RunError
    from precompute.selection import SelectionError
    from precompute.store import StoreError

    reg = Registry(settings.jobs_path)
    raw = reg._c.get(f"job/{job_id}")  # noqa: SLF001
    if raw is None:
        return {"id": job_id, "state": "failed", "message": f"unknown job {job_id}: start it again"}
    if raw["state"] != "queued":  # delivered twice, or already finished: nothing to do
        return reg.get(job_id)
    if raw.get("cancel_requested"):
        reg.finish(job_id, "cancelled", "cancelled before it started")
        return reg.get(job_id)
    reg.start(job_id, current_handle())
    log.info("job %s started by %s: model %s, corpus %s", job_id, raw["user"],
             raw["labels"].get("model", "?"), raw["labels"].get("corpus", "?"))
    reporter = Reporter(reg, job_id, set_progress)
    reporter.start()
    t0 = time.perf_counter()
    try:
        import multiprocessing

        if multiprocessing.current_process().daemon:
            raise JobInvalid("this worker runs jobs in daemonic processes (Celery's prefork pool), which cannot "
                             "start the projection workers: run the worker with --pool=solo")
        p = validate_params(raw["params"], settings)
        cfg = RunConfig(model=p["model"], corpus=p["corpus"], cache=str(settings.cache), layers=p["layers"],
                        heads=p["heads"], projections=",".join(p["projections"]),
                        dims=",".join(str(d) for d in p["dims"]), variants=",".join(p["variants"]),
                        max_tokens=p["max_tokens"], text_column=p["text_column"], workers=1,
                        target_column=p.get("target_column"))
        summary = _make_run(cfg, reporter).execute()
        st = summary.status
        warn = f"; {len(summary.warnings)} warning(s): {summary.warnings[0]}" if summary.warnings else ""
        msg = (f"{st['status']}: {st['heads_done']}/{st['heads_total']} heads "
               f"({summary.heads_computed} computed by this job) in {time.perf_counter() - t0:.0f} s{warn}")
        reg.finish(job_id, "done", msg, run_id=summary.run_id, heads_computed=summary.heads_computed,
                   heads_done=st["heads_done"], heads_total=st["heads_total"], progress=1.0, stage="finished")
        log.info("job %s done: run %s, %s", job_id, summary.run_id, msg)
    except JobCancelled:
        e = reg.get(job_id) or {}
        run = f"run {e['run_id']} is kept as a partial run; " if e.get("run_id") else ""
        done = reporter.fields.get("heads_done")
        after = f" after {done}/{reporter.heads_total} heads" if reporter.heads_total and done is not None else ""
        reg.finish(job_id, "cancelled", f"cancelled{after}: {run}start the same job again to resume it",
                   heads_done=done)
        log.info("job %s cancelled", job_id)
    except RunError as exc:
        msg, run_id = _locked_message(reg, job_id, str(exc))
        reg.finish(job_id, "failed", msg, **({"run_id": run_id} if run_id else {}))
        log.info("job %s failed: %s", job_id, msg)
    except (PathRefused, JobInvalid, CorpusError, ModelLoadError, SelectionError, StoreError) as exc:
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        reg.finish(job_id, "failed", msg)
        log.info("job %s failed: %s", job_id, msg)
    except Exception as exc:  # noqa: BLE001 - anything else: one line for the page, the trace for the log
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        reg.finish(job_id, "failed", f"the job stopped on an unexpected error ({exc.__class__.__name__}: {first}); "
                                     "the partial run is kept — start it again to resume, or tell the admin")
        log.exception("job %s failed", job_id)
    finally:
        reporter.stop()
    final = reg.get(job_id)
    if set_progress is not None:
        try:
            set_progress([100 if final["state"] == "done" else round(100 * float(final.get("progress") or 0)),
                          final["state"] + (f" · {final['stage']}" if final["state"] != "done" and final.get("stage")
                                            else "")])
        except Exception as exc:  # noqa: BLE001 - edge to the manager's store (e.g. Redis down): the registry has it
            log.warning("job %s: final progress not delivered to the page (%s)", job_id, exc.__class__.__name__)
    reg.close()
    return final
