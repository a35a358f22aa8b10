"""The shared list of precompute jobs started from the UI, visible to every user.

One diskcache directory (``<jobs dir>/registry``) shared by the web processes and the job
processes (DiskcacheManager children or Celery workers on a shared filesystem). Each job is one
entry ``job/<id>``: who started it, what it computes, its state and progress. Writes are small
read-modify-write transactions (diskcache ``transact``), so concurrent writers never lose each
other's fields.

States: ``queued`` → ``running`` → ``done`` | ``failed`` | ``cancelled``. A job whose process
died (SIGKILL, worker lost, machine rebooted) cannot say so itself: :meth:`Registry.view` shows
it as ``interrupted`` — its process is gone on this host, or its heartbeat (every few seconds
while it runs) has stopped — and :meth:`Registry.reap` records that for good.
"""
from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import time
from pathlib import Path

import diskcache

ACTIVE = ("queued", "running")
TERMINAL = ("done", "failed", "cancelled", "interrupted")
HEARTBEAT_S = 3.0
STALE_S = 45.0           # no heartbeat for this long: the job's process is gone
QUEUED_STALE_S = 6 * 3600  # queued this long without a worker picking it up: give up
KEEP = 200               # finished jobs kept in the list
# what opening or using the registry (a diskcache folder on local disk) can raise
REGISTRY_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout)


def _pid_alive(pid, create_time=None) -> bool:
    """Is the process still there (and the same one: its start time matches, so pid reuse can't
    fool us)? A zombie counts as gone."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency of the diskcache manager
        return True
    try:
        p = psutil.Process(int(pid))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(p.create_time() - float(create_time)) < 1.0
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, ValueError, TypeError):
        return True


def process_identity() -> dict:
    """pid, host and process start time of the calling process (pid reuse cannot fool it)."""
    created = None
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency of the diskcache manager
        psutil = None
    if psutil is not None:
        try:
            created = psutil.Process().create_time()
        except (psutil.Error, OSError):
            created = None
    return {"pid": os.getpid(), "host": socket.gethostname(), "created_at": created}


class Registry:
    def __init__(self, jobs_path: str | os.PathLike):
        path = Path(jobs_path) / "registry"
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._c = diskcache.Cache(str(path), timeout=30, eviction_policy="none", size_limit=2**30)

    def close(self):
        self._c.close()

    # ----------------------------------------------------------------- writes
    def create(self, user: str, params: dict, labels: dict | None = None) -> str:
        job_id = secrets.token_hex(4)
        now = time.time()
        entry = {"id": job_id, "user": user or "-", "params": dict(params), "labels": dict(labels or {}),
                 "state": "queued", "progress": 0.0, "stage": "waiting for a worker", "message": "",
                 "created": now, "started": None, "finished": None, "heartbeat": now,
                 "run_id": None, "handle": None, "pid": None, "host": None, "created_at": None,
                 "cancel_requested": False, "heads_computed": None, "heads_done": None, "heads_total": None}
        with self._c.transact():
            self._c.set(f"job/{job_id}", entry)
            self._bump()
        self._trim()
        return job_id

    def update(self, job_id: str, state_change: bool = False, **fields) -> dict | None:
        with self._c.transact():
            e = self._c.get(f"job/{job_id}")
            if e is None:
                return None
            if e["state"] in TERMINAL and (state_change or "heartbeat" in fields):
                return e  # a finished job stays finished (late heartbeats and cancels are ignored)
            e.update(fields)
            self._c.set(f"job/{job_id}", e)
            if state_change:
                self._bump()
        return e

    def start(self, job_id: str, handle: str) -> dict | None:
        ident = process_identity()
        return self.update(job_id, state_change=True, state="running", started=time.time(), handle=str(handle),
                           heartbeat=time.time(), stage="starting", **ident)

    def finish(self, job_id: str, state: str, message: str, **fields) -> dict | None:
        assert state in TERMINAL
        return self.update(job_id, state_change=True, state=state, message=message, finished=time.time(),
                           **fields)

    def beat(self, job_id: str, **fields) -> dict | None:
        return self.update(job_id, heartbeat=time.time(), **fields)

    def request_cancel(self, job_id: str) -> dict | None:
        return self.update(job_id, state_change=True, cancel_requested=True)

    def _bump(self):
        self._c.set("generation", int(self._c.get("generation", 0)) + 1)

    def _trim(self):
        entries = self.entries(raw=True)
        done = [e for e in entries if e["state"] in TERMINAL]
        for e in done[KEEP:]:
            self._c.delete(f"job/{e['id']}")

    # ----------------------------------------------------------------- reads
    def generation(self) -> int:
        return int(self._c.get("generation", 0))

    def get(self, job_id: str) -> dict | None:
        e = self._c.get(f"job/{job_id}")
        return None if e is None else self.view(e)

    def entries(self, raw: bool = False) -> list[dict]:
        out = []
        for k in self._c.iterkeys():
            if isinstance(k, str) and k.startswith("job/"):
                e = self._c.get(k)
                if e is not None:
                    out.append(e if raw else self.view(e))
        return sorted(out, key=lambda e: -e["created"])

    def by_handle(self, handle) -> dict | None:
        handle = str(handle)
        for e in self.entries(raw=True):
            if e.get("handle") == handle:
                return self.view(e)
        return None

    def active_on_run(self, run_id: str, exclude: str | None = None) -> dict | None:
        for e in self.entries():
            if e["run_id"] == run_id and e["state"] == "running" and e["id"] != exclude:
                return e
        return None

    @staticmethod
    def view(e: dict) -> dict:
        """The entry as users should see it: a running job whose process is gone is interrupted."""
        e = dict(e)
        if e["state"] == "running":
            gone = False
            if e.get("host") == socket.gethostname() and e.get("pid"):
                gone = not _pid_alive(e["pid"], e.get("created_at"))
            if not gone and time.time() - float(e.get("heartbeat") or 0) > STALE_S:
                gone = True
            if gone:
                e["state"] = "cancelled" if e.get("cancel_requested") else "interrupted"
                e["message"] = interrupted_message(e)
        elif e["state"] == "queued" and time.time() - e["created"] > QUEUED_STALE_S:
            e["state"] = "failed"
            e["message"] = "no worker picked the job up: check that a worker is running, then start it again"
        return e

    def reap(self) -> int:
        """Record 'interrupted' for running jobs whose process is gone; returns how many."""
        n = 0
        for raw in self.entries(raw=True):
            v = self.view(raw)
            if raw["state"] in ACTIVE and v["state"] != raw["state"]:
                self.finish(raw["id"], v["state"], v["message"])
                n += 1
        return n


def interrupted_message(e: dict) -> str:
    partial = ""
    if e.get("heads_total"):
        partial = f" after {e.get('heads_done') or 0}/{e['heads_total']} heads"
    what = "cancelled" if e.get("cancel_requested") else "interrupted (its process stopped)"
    run = f"run {e['run_id']} is kept as a partial run; " if e.get("run_id") else ""
    return f"{what}{partial}: {run}start the same job again to resume it"
