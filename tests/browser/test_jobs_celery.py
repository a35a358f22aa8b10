"""Background precompute with the team setup, for real: Debian's redis-server (broker + results,
password protected) and a Celery worker subprocess (`celery -A jobs.worker worker --pool=solo`),
the web app in this process, driven in headless Chromium.

- a job started from the page runs on the worker (from an uploaded corpus) and finishes;
- Redis stopped mid-job and restarted: the job goes on in its worker and completes, the page keeps
  waiting without an error, nothing in the store is corrupt; a job started while Redis is down
  fails at once with one clear line (and is marked failed in the job list);
- the worker SIGKILLed mid-job: the job shows as interrupted (and the page stops waiting), the store
  is consistent, and the same job on a new worker computes only the missing heads;
- no secret (the Redis password) appears in the worker's or the web process's logs.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from precompute.store import Store
from tests.browser.helpers import (SENTENCES, all_entries_decode, collect_logs, free_port, job_of, open_page, pick,
                                   set_checklist, set_text, shot, start_job, text_of, upload, wait, wait_job)

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path(REDIS).exists(),
                                reason="needs Debian's redis-server (bash scripts/setup.sh --test installs it)")


class Redis:
    def __init__(self, port: int, password: str, log: Path):
        self.port, self.password, self.log, self.proc = port, password, log, None

    def start(self):
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--requirepass", self.password],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        import redis

        end = time.time() + 20
        while time.time() < end:
            try:
                if redis.Redis(port=self.port, password=self.password, socket_timeout=1).ping():
                    return
            except redis.exceptions.RedisError:
                time.sleep(0.1)
        raise AssertionError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Worker:
    def __init__(self, env: dict, log: Path):
        self.env, self.log, self.proc, self.family = env, log, None, set()

    def start(self):
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "jobs.worker", "worker", "--pool=solo",
                                      "--loglevel=INFO", "-n", f"atlas-test-{os.getpid()}-{time.time_ns()}@%h",
                                      "--without-gossip", "--without-mingle", "--without-heartbeat"],
                                     cwd=ROOT, env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        end = time.time() + 90
        while time.time() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"celery worker exited: {self.log.read_text()[-2000:]}")
            if " ready." in self.log.read_bytes()[offset:].decode(errors="replace"):
                return
            time.sleep(0.3)
        raise AssertionError("celery worker not ready in 90 s")

    def remember_family(self):
        """The worker's descendants (the pipeline's process pool): ours to clean up after a SIGKILL."""
        import psutil

        try:
            self.family |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass

    def kill(self):
        self.remember_family()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.remember_family()
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.reap_family()

    def reap_family(self):
        import psutil

        for pid in sorted(self.family):
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
            except psutil.NoSuchProcess:
                pass
        self.family.clear()


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001
            self.lines.append(str(record.msg))


@pytest.fixture(scope="module")
def team():
    from werkzeug.serving import make_server

    from app import create_app
    from attention_atlas.settings import load_settings

    d = Path(tempfile.mkdtemp(prefix="atlas-celery-"))
    (d / "five.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    password = "pw-" + secrets.token_hex(8)
    redis = Redis(free_port(), password, d / "redis.log")
    redis.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env.update({"ATLAS_REDIS_URL": f"redis://:{password}@127.0.0.1:{redis.port}/0", "ATLAS_CACHE": str(d / "store"),
                "ATLAS_JOBS_DIR": str(d / "jobs"), "ATLAS_JOB_MAX_TOKENS": "4000", "ATLAS_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1"})
    worker = Worker(env, d / "worker.log")
    capture = _Capture()
    logging.getLogger().addHandler(capture)
    old_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = None
    try:
        worker.start()
        settings = load_settings(env={k: v for k, v in env.items() if k.startswith("ATLAS_")})
        app = create_app(settings=settings)
        srv = make_server("127.0.0.1", free_port(), app.server, threaded=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        yield {"base": f"http://127.0.0.1:{srv.server_port}", "dir": d, "settings": settings, "redis": redis,
               "worker": worker, "password": password, "logs": capture, "app": app}
    finally:
        if srv is not None:
            srv.shutdown()
        worker.stop()
        redis.stop()
        logging.getLogger().removeHandler(capture)
        logging.getLogger().setLevel(old_level)
        shutil.rmtree(d, ignore_errors=True)


def heads_done(store_dir, run_id) -> int:
    st = Store(store_dir, readonly=True)
    try:
        return st.status(run_id)["heads_done"]
    finally:
        st.close()


def test_celery_jobs_redis_restart_and_worker_kill(team, driver):
    base, settings, store_dir = team["base"], team["settings"], team["dir"] / "store"
    assert type(team["app"]._background_manager).__name__ == "AtlasCeleryManager"  # noqa: SLF001
    open_page(driver, base)
    assert "Celery workers" in text_of(driver, "jobs-limits")

    # ---- 1. a job from an uploaded corpus runs on the worker and finishes
    upload(driver, team["dir"] / "five.txt")
    set_checklist(driver, "jobs-projections", {"pca"})
    set_checklist(driver, "jobs-variants", {"translated"})
    set_text(driver, "jobs-layers", "0")
    job1 = start_job(driver)
    e1 = wait_job(settings, job1, lambda e: e["state"] not in ("queued", "running"), 120, "job 1 finished")
    assert e1["state"] == "done" and e1["heads_computed"] == 12, e1
    assert len(e1["handle"]) == 36 and e1["pid"] == team["worker"].proc.pid  # a Celery task id, run by the worker
    wait(driver, "return document.getElementById('jobs-status').innerText.includes('done')", 15, "done shown")
    wait(driver, f"return document.getElementById('run-select').innerText.includes('{e1['run_id']}')", 15,
         "new run in run-select")

    # ---- 2. Redis stopped mid-job and restarted: the job completes, the store is intact
    pick(driver, "jobs-corpus", "demo — demo text corpus (310 sentences, shipped)")
    set_text(driver, "jobs-layers", "0-3")
    set_text(driver, "jobs-max-tokens", "400")
    job2 = start_job(driver, job1)
    wait_job(settings, job2, lambda e: (e.get("heads_done") or 0) >= 3, 120, "job 2 in its heads stage")
    t_stop = time.time()
    team["redis"].stop()
    during = wait_job(settings, job2, lambda e: True, 1, "job 2")
    # while Redis is down: starting a job fails at once, in one line, and the job list says so
    from jobs.manager import JobQueueUnavailable
    from jobs.registry import Registry
    reg = Registry(settings.jobs_path)
    queued = reg.create("tester", {"model": "minilm", "corpus": "demo"}, {"model": "minilm", "corpus": "demo"})
    mgr = team["app"]._background_manager  # noqa: SLF001
    t0 = time.time()
    with pytest.raises(JobQueueUnavailable) as exc:
        mgr.call_job_fn("k", next(iter(mgr.func_registry.values())), [{"job": queued}], {})
    refused_s = time.time() - t0
    assert "unreachable" in str(exc.value) and team["password"] not in str(exc.value)
    e_q = reg.get(queued)
    assert e_q["state"] == "failed" and "Redis" in e_q["message"] and "\n" not in e_q["message"]
    reg.close()
    time.sleep(max(0.0, 4 - (time.time() - t_stop)))
    assert not text_of(driver, "msg-error"), text_of(driver, "msg-error")  # the page waits, no error
    team["redis"].start()
    outage_s = time.time() - t_stop
    e2 = wait_job(settings, job2, lambda e: e["state"] not in ("queued", "running"), 150, "job 2 after the outage")
    assert e2["state"] == "done" and e2["heads_computed"] == 48, e2
    assert (during.get("heads_done") or 0) < 48  # the outage really was mid-job
    wait(driver, "return document.getElementById('jobs-status').innerText.includes('done')", 20, "job 2 done shown")
    wait(driver, "return !document.getElementById('jobs-start').disabled", 20, "page stopped waiting")
    assert Store(store_dir, readonly=True).status(e2["run_id"])["status"] == "complete"
    n_entries = all_entries_decode(store_dir)

    # ---- 3. the worker SIGKILLed mid-job: interrupted, consistent, resumable with only the missing heads
    set_text(driver, "jobs-layers", "0-2")
    set_text(driver, "jobs-max-tokens", "450")
    job3 = start_job(driver, job2)
    wait_job(settings, job3, lambda e: (e.get("heads_done") or 0) >= 2, 120, "job 3 in its heads stage")
    team["worker"].kill()
    t_kill = time.time()
    e3 = wait_job(settings, job3, lambda e: e["state"] != "running", 60, "job 3 seen as interrupted")
    detect_s = time.time() - t_kill
    assert e3["state"] == "interrupted" and "resume" in e3["message"], e3
    wait(driver, "return document.getElementById('jobs-status').innerText.includes('interrupted')", 20,
         "interrupted shown")
    wait(driver, "return !document.getElementById('jobs-start').disabled", 20, "page stopped waiting for the dead job")
    import requests  # the app serves on, stored runs included, while the worker is gone
    health = requests.get(base + "/healthz", timeout=10).json()
    assert health["status"] == "ok" and {e1["run_id"], e2["run_id"]} <= set(health["runs"])
    run3 = e3["run_id"]
    done_at_kill = heads_done(store_dir, run3)
    assert 0 < done_at_kill < 36
    assert all_entries_decode(store_dir) > n_entries
    st = Store(store_dir)
    assert st.try_lock(run3) is None  # the dead worker's lock is taken over (same host, dead pid)
    st.unlock(run3)
    st.close()
    team["worker"].reap_family()
    t_restart = time.time()
    team["worker"].start()
    worker_start_s = time.time() - t_restart
    job4 = start_job(driver, job3)
    e4 = wait_job(settings, job4, lambda e: e["state"] not in ("queued", "running"), 150, "job 3 resumed")
    assert e4["state"] == "done" and e4["run_id"] == run3, e4
    assert e4["heads_computed"] == 36 - done_at_kill, (e4, done_at_kill)
    wait(driver, "return document.getElementById('jobs-table').innerText.includes('interrupted')", 10, "history kept")
    shot(driver, "jobs-celery")
    collect_logs(driver)

    # ---- 4. no secret in any log
    worker_log = team["worker"].log.read_text(errors="replace")
    web_log = "\n".join(team["logs"].lines)
    assert "atlas.jobs" in worker_log and "ready." in worker_log
    for text in (worker_log, web_log):
        assert team["password"] not in text
    print(f"\nRESULTS celery: redis outage {outage_s:.1f} s mid-job (job 2 at {during.get('heads_done')}/48 heads) -> "
          f"job completed, {n_entries} entries verified; job refused while Redis down in {refused_s:.2f} s; "
          f"worker SIGKILL at {done_at_kill}/36 heads -> interrupted seen after {detect_s:.1f} s, worker restart "
          f"{worker_start_s:.1f} s, resume computed {e4['heads_computed']} heads in "
          f"{(e4['finished'] or 0) - (e4['started'] or 0):.1f} s")
