"""The run store: one diskcache directory holding every precomputed run.

Layout (diskcache keys, values are checksummed blobs — see ``encode``):

    format                              {"version": FORMAT_VERSION}
    run/<id>/manifest                   JSON: model, corpus, settings, versions, coverage, timings
    run/<id>/tokens                     arrays: one row per token (text, ids, positions, patches)
    run/<id>/inputs                     JSON: the inputs (texts, or image labels)
    run/<id>/image/<i>                  arrays: image i as the model saw it (uint8 H×W×3)
    run/<id>/head/<l>/<h>/qk            arrays: queries, keys (n_tokens × head_dim, float32)
    run/<id>/head/<l>/<h>/metrics       JSON: faithfulness figures and timings of the head
    run/<id>/head/<l>/<h>/proj/<v>/<m>/<d>   arrays: coords (2·n_tokens × d, float32;
                                        all queries first, then all keys, token order)
    run/<id>/analysis/<name>            JSON or arrays: derived results (head patterns, ablation
                                        effects, value norms …), written by analysis jobs

Every value is written by one diskcache ``set`` (a single SQLite transaction; large
values go to a file that is complete before the row that names it is committed), so a
head's entry is either there whole or not there: a run killed at any moment, SIGKILL
included, leaves a consistent store. A head's status is derived from which entries
exist, so no shared counter is ever read-modified-written. Each blob carries a BLAKE2b
digest that is checked on every read; a mismatch raises :class:`CorruptEntry` instead of
returning damaged data.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import socket
import sqlite3
import struct
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable

import diskcache
import numpy as np

FORMAT_VERSION = 1
_MAGIC = b"AAS1"
_KIND_JSON = 1
_KIND_ARRAYS = 2
_HEADER = struct.Struct("<4sB16s")  # magic, kind, digest


class StoreError(Exception):
    """A problem with the store, phrased as one line that names the fix."""


class CorruptEntry(StoreError):
    """A stored entry failed its checksum or could not be decoded."""


REPAIR_HINT = "re-run the same `python -m precompute run` command: it verifies the run and recomputes exactly the bad entries"


def _is_disk_full(exc: BaseException) -> bool:
    return (getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            or "disk is full" in str(exc) or "No space left" in str(exc))


def _is_read_only(exc: BaseException) -> bool:
    return (getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM)
            or "readonly database" in str(exc) or "read-only file system" in str(exc).lower())


def disk_full_message(path) -> str:
    return (f"the disk holding the store {path} is full: free some space (df -h {path}) or choose another "
            "--cache on a bigger disk, then re-run the same command; what was computed is kept")


def write_error(path, exc: BaseException) -> StoreError:
    """A failed store write as one line naming the fix (disk full / read-only / other)."""
    if _is_disk_full(exc):
        return StoreError(disk_full_message(path))
    if _is_read_only(exc):
        return StoreError(f"the store {path} is read-only here ({getattr(exc, 'strerror', None) or exc}): it can be "
                          "listed, exported and served, but computing needs a writable --cache (copy it, or fix the mount/permissions)")
    return StoreError(f"cannot write to the store {path} ({exc.__class__.__name__}: {exc}): check the disk and its "
                      "permissions, then re-run the same command; what was computed is kept")


class _ReadOnlyCache:
    """The read side of a diskcache directory through a read-only SQLite connection, for stores on
    read-only mounts or folders this user may not write (diskcache itself always opens read-write:
    it creates tables and sets pragmas). Values decode exactly as diskcache's own ``Disk`` does."""

    def __init__(self, directory: str):
        self._directory = directory
        self._disk = diskcache.Disk(directory)
        db = Path(directory) / "cache.db"
        last = None
        # mode=ro reads a live WAL store (needs its -shm file); immutable=1 reads a store on a read-only
        # mount whose writer has closed it (the WAL is then checkpointed into cache.db)
        for flags in ("mode=ro", "mode=ro&immutable=1"):
            try:
                con = sqlite3.connect(f"{db.resolve().as_uri()}?{flags}", uri=True, check_same_thread=False,
                                      isolation_level=None, timeout=60)
                con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
                self._con = con
                return
            except sqlite3.Error as exc:
                last = exc
        raise last

    def get(self, key, default=None):
        db_key, raw = self._disk.put(key)
        row = self._con.execute("SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = ?",
                                (db_key, raw)).fetchone()
        if row is None:
            return default
        return self._disk.fetch(row[0], row[1], row[2], False)

    def __contains__(self, key) -> bool:
        db_key, raw = self._disk.put(key)
        return self._con.execute("SELECT 1 FROM Cache WHERE key = ? AND raw = ?", (db_key, raw)).fetchone() is not None

    def reset(self, key, value=None, update=False):
        """Read a diskcache setting (only reading: e.g. ``count`` for Store.generation)."""
        row = self._con.execute("SELECT value FROM Settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def iterkeys(self):
        for key, raw in self._con.execute("SELECT key, raw FROM Cache ORDER BY key").fetchall():
            yield self._disk.get(key, raw)

    def close(self):
        self._con.close()


# --------------------------------------------------------------------------- encoding
def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


def encode_json(obj: Any) -> bytes:
    payload = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return _HEADER.pack(_MAGIC, _KIND_JSON, _digest(payload)) + payload


def encode_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    payload = buf.getvalue()
    return _HEADER.pack(_MAGIC, _KIND_ARRAYS, _digest(payload)) + payload


def decode(blob: Any, key: str) -> Any:
    """Verify and decode a stored blob; raise CorruptEntry naming the key otherwise."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < _HEADER.size:
        raise CorruptEntry(f"store entry {key!r} is truncated or not ours: {REPAIR_HINT}")
    magic, kind, digest = _HEADER.unpack_from(blob)
    payload = bytes(blob[_HEADER.size:])
    if magic != _MAGIC or _digest(payload) != digest:
        raise CorruptEntry(f"store entry {key!r} failed its checksum (corrupt or truncated): {REPAIR_HINT}")
    try:
        if kind == _KIND_JSON:
            return json.loads(payload)
        if kind == _KIND_ARRAYS:
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, KeyError, RecursionError, struct.error, zlib.error,
            zipfile.BadZipFile) as exc:  # checksum passed but payload unreadable: still corrupt
        raise CorruptEntry(f"store entry {key!r} could not be decoded ({exc.__class__.__name__}): {REPAIR_HINT}") from exc
    raise CorruptEntry(f"store entry {key!r} has an unknown kind {kind}: it was written by another version")


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True
    return True


# --------------------------------------------------------------------------- keys
def head_prefix(run_id: str, layer: int, head: int) -> str:
    return f"run/{run_id}/head/{layer}/{head}"


def proj_key(run_id: str, layer: int, head: int, variant: str, method: str, dim: int) -> str:
    return f"{head_prefix(run_id, layer, head)}/proj/{variant}/{method}/{dim}"


class Store:
    """A diskcache-backed store of runs; safe for many readers while one process writes."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self.read_only_mount = False    # opened through the read-only reader (mount or permissions)
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"--cache {self.path} is a file, not a store folder: give a folder (an existing store, "
                             "or a new name for a new store)")
        if readonly:
            if not (self.path / "cache.db").is_file():
                raise StoreError(f"no Attention Atlas store at {self.path}: run `python -m precompute run ... --cache {self.path}` first")
        else:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                probe = self.path / ".write-probe"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                if _is_disk_full(exc):
                    raise StoreError(disk_full_message(self.path)) from exc
                ro = " (read-only file system: `list`, `export` and the dashboard can still read it)" \
                    if exc.errno == errno.EROFS else ""
                raise StoreError(f"cache directory {self.path} is not writable ({exc.strerror}){ro}: choose another "
                                 "--cache or fix its permissions") from exc
        try:
            self._cache = diskcache.Cache(str(self.path), size_limit=2**50, eviction_policy="none",
                                          cull_limit=0, timeout=60)
        except (sqlite3.Error, OSError, diskcache.Timeout) as exc:
            if readonly and isinstance(exc, (sqlite3.OperationalError, OSError)):
                try:  # a read-only mount or folder, or a full disk: read it without writing anything
                    self._cache = _ReadOnlyCache(str(self.path))
                    self.read_only_mount = True
                except sqlite3.DatabaseError as exc2:
                    raise self._open_error(exc2) from exc2
            else:
                raise self._open_error(exc) from exc
        self._check_format()

    def _open_error(self, exc: BaseException) -> StoreError:
        if _is_disk_full(exc):
            return StoreError(disk_full_message(self.path))
        if _is_read_only(exc):
            return StoreError(f"the store {self.path} cannot be opened for writing ({exc}): it is on a read-only "
                              "mount or not yours; `list`, `export` and the dashboard can read it, computing needs a "
                              "writable --cache")
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in str(exc) or "malformed" in str(exc)):
            return StoreError(f"the store's index {self.path / 'cache.db'} is damaged ({exc}): move the folder away "
                              "(keep it until a new run has succeeded) and re-run into a new --cache")
        return StoreError(f"cannot open the store at {self.path} ({exc.__class__.__name__}: {exc}): check the disk, "
                          "the folder's permissions and that no other program holds it")

    # ----------------------------------------------------------------- basics
    def _check_format(self) -> None:
        blob = self._cache.get("format")
        if blob is None:
            if self.readonly:
                raise StoreError(f"{self.path} is not an Attention Atlas store (no format marker): point --cache at a store made by `python -m precompute run`")
            self._put("format", encode_json({"version": FORMAT_VERSION}))
            return
        found = decode(blob, "format").get("version")
        if found != FORMAT_VERSION:
            raise StoreError(f"store at {self.path} was written by an incompatible version (format {found}, this version reads {FORMAT_VERSION}): use a new --cache directory")

    def close(self) -> None:
        self._cache.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _get(self, key: str, default: Any = None) -> Any:
        blob = self._cache.get(key)
        return default if blob is None else decode(blob, key)

    def _put(self, key: str, blob: bytes) -> None:
        if self.readonly:
            raise StoreError("store opened read-only")
        try:
            self._cache.set(key, blob)
        except (OSError, sqlite3.Error) as exc:
            raise write_error(self.path, exc) from exc

    def delete(self, key: str) -> None:
        if self.readonly:
            raise StoreError("store opened read-only")
        try:
            self._cache.delete(key)
        except (OSError, sqlite3.Error) as exc:
            raise write_error(self.path, exc) from exc

    def verify(self, run_id: str) -> list[str]:
        """Keys of the run whose entries fail their checksum or cannot be decoded (reads every entry)."""
        bad = []
        for key in self.keys(f"run/{run_id}/"):
            if key.endswith("/lock"):
                continue
            try:
                raw = self._cache.get(key)
                if raw is not None:
                    decode(raw, key)
                elif key in self._cache:  # listed, but diskcache could not read its file (gone): "absent"
                    bad.append(key)
            except CorruptEntry:
                bad.append(key)
            except (OSError, EOFError):  # a large value whose file is gone or unreadable
                bad.append(key)
        return bad

    def has(self, key: str) -> bool:
        return key in self._cache

    def keys(self, prefix: str = "") -> list[str]:
        return [k for k in self._cache.iterkeys() if isinstance(k, str) and k.startswith(prefix)]

    def generation(self) -> tuple:
        """A cheap stamp (no scan) that changes whenever any process commits to the store: the
        entry count (diskcache's own counter) and the SQLite write-ahead log's mtime and size (every
        commit appends to it, a checkpoint rewrites it). Readers compare it to know their caches
        may be stale, e.g. while a run is adding heads or merging metrics."""
        try:
            st = os.stat(self.path / "cache.db-wal")
            wal = (st.st_mtime_ns, st.st_size)
        except OSError:
            wal = None
        return (int(self._cache.reset("count", update=False)), wal)

    def volume(self, prefix: str) -> int:
        """Bytes used by the entries under a prefix (from the index: no value is read)."""
        sql = ("SELECT key, raw, CASE WHEN size > 0 THEN size ELSE length(value) END FROM Cache "
               "WHERE raw = 1 AND key >= ? AND key < ?")
        args = (prefix, prefix + "\uffff")
        if isinstance(self._cache, _ReadOnlyCache):
            rows = self._cache._con.execute(sql, args).fetchall()
        else:
            rows = self._cache._sql(sql, args).fetchall()
        return int(sum(r[2] or 0 for r in rows if isinstance(r[0], str) and r[0].startswith(prefix)))

    def try_lock(self, run_id: str) -> dict | None:
        """Take the run's writer lock; return None on success, else the holder's record.

        A lock left by a process that died on this host (SIGKILL included) is taken over.
        """
        key = f"run/{run_id}/lock"
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        if self._cache.add(key, me):
            return None
        holder = self._cache.get(key)
        if isinstance(holder, dict) and holder.get("host") == me["host"] and not _pid_alive(holder.get("pid")):
            with self._cache.transact():
                if self._cache.get(key) == holder:
                    self._cache.set(key, me)
                    return None
        return holder if isinstance(holder, dict) else {"pid": "?"}

    def writer(self, run_id: str) -> dict | None:
        """The record of the process writing the run now ({pid, host, since}), or None: no lock,
        or a lock left by a process that died on this host."""
        holder = self._cache.get(f"run/{run_id}/lock")
        if not isinstance(holder, dict):
            return None
        if holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
            return None
        return holder

    def unlock(self, run_id: str) -> None:
        key = f"run/{run_id}/lock"
        holder = self._cache.get(key)
        if isinstance(holder, dict) and holder.get("pid") == os.getpid():
            self._cache.delete(key)

    # ----------------------------------------------------------------- runs
    def run_ids(self) -> list[str]:
        return sorted(k.split("/")[1] for k in self.keys("run/") if k.endswith("/manifest"))

    def manifest(self, run_id: str) -> dict:
        m = self._get(f"run/{run_id}/manifest")
        if m is None:
            raise StoreError(f"unknown run {run_id!r}: `python -m precompute list --cache {self.path}` shows the stored runs")
        return m

    def put_manifest(self, run_id: str, manifest: dict) -> None:
        self._put(f"run/{run_id}/manifest", encode_json(manifest))

    def tokens(self, run_id: str) -> dict[str, np.ndarray]:
        return self._get(f"run/{run_id}/tokens")

    def put_tokens(self, run_id: str, tokens: dict[str, np.ndarray]) -> None:
        self._put(f"run/{run_id}/tokens", encode_arrays(tokens))

    def target_tokens(self, run_id: str) -> dict[str, np.ndarray] | None:
        """Encoder–decoder runs: the token table of what the decoder read (None otherwise)."""
        return self._get(f"run/{run_id}/target_tokens")

    def put_target_tokens(self, run_id: str, tokens: dict[str, np.ndarray]) -> None:
        self._put(f"run/{run_id}/target_tokens", encode_arrays(tokens))

    def inputs(self, run_id: str) -> list:
        return self._get(f"run/{run_id}/inputs")

    def put_inputs(self, run_id: str, inputs: list) -> None:
        self._put(f"run/{run_id}/inputs", encode_json(inputs))

    def image(self, run_id: str, index: int) -> np.ndarray | None:
        arrays = self._get(f"run/{run_id}/image/{index}")
        return None if arrays is None else arrays["rgb"]

    def put_image(self, run_id: str, index: int, rgb: np.ndarray) -> None:
        self._put(f"run/{run_id}/image/{index}", encode_arrays({"rgb": rgb.astype(np.uint8)}))

    # ----------------------------------------------------------------- heads
    def qk(self, run_id: str, layer: int, head: int) -> tuple[np.ndarray, np.ndarray] | None:
        arrays = self._get(f"{head_prefix(run_id, layer, head)}/qk")
        return None if arrays is None else (arrays["queries"], arrays["keys"])

    def put_qk(self, run_id: str, layer: int, head: int, queries: np.ndarray, keys: np.ndarray) -> None:
        self._put(f"{head_prefix(run_id, layer, head)}/qk",
                  encode_arrays({"queries": np.ascontiguousarray(queries, np.float32),
                                 "keys": np.ascontiguousarray(keys, np.float32)}))

    def has_qk(self, run_id: str, layer: int, head: int) -> bool:
        return self.has(f"{head_prefix(run_id, layer, head)}/qk")

    def metrics(self, run_id: str, layer: int, head: int) -> dict | None:
        return self._get(f"{head_prefix(run_id, layer, head)}/metrics")

    def put_metrics(self, run_id: str, layer: int, head: int, metrics: dict) -> None:
        self._put(f"{head_prefix(run_id, layer, head)}/metrics", encode_json(metrics))

    def coords(self, run_id: str, layer: int, head: int, variant: str, method: str, dim: int) -> np.ndarray | None:
        arrays = self._get(proj_key(run_id, layer, head, variant, method, dim))
        return None if arrays is None else arrays["coords"]

    def put_coords(self, run_id: str, layer: int, head: int, variant: str, method: str, dim: int,
                   coords: np.ndarray) -> None:
        self._put(proj_key(run_id, layer, head, variant, method, dim),
                  encode_arrays({"coords": np.asarray(coords, np.float32)}))

    def has_coords(self, run_id: str, layer: int, head: int, variant: str, method: str, dim: int) -> bool:
        return self.has(proj_key(run_id, layer, head, variant, method, dim))

    # ----------------------------------------------------------------- derived analyses
    def analysis(self, run_id: str, name: str) -> Any:
        """A derived result stored under ``run/<id>/analysis/<name>`` (JSON or arrays), or None."""
        return self._get(f"run/{run_id}/analysis/{name}")

    def put_analysis(self, run_id: str, name: str, value: Any) -> None:
        """Store a derived result: a dict of numpy arrays is stored as arrays, anything else as JSON."""
        if isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            blob = encode_arrays(value)
        else:
            blob = encode_json(value)
        self._put(f"run/{run_id}/analysis/{name}", blob)

    # ----------------------------------------------------------------- status
    def head_missing(self, run_id: str, layer: int, head: int, manifest: dict) -> list[str]:
        """What this head still lacks for the manifest's requested coverage ([] = done)."""
        missing = []
        if not self.has_qk(run_id, layer, head):
            missing.append("qk")
        if not self.has(f"{head_prefix(run_id, layer, head)}/metrics"):
            missing.append("metrics")
        for variant, method, dim in requested_projections(manifest):
            if not self.has_coords(run_id, layer, head, variant, method, dim):
                missing.append(f"{variant}/{method}/{dim}d")
        return missing

    def status(self, run_id: str, manifest: dict | None = None) -> dict:
        """{'status': 'complete'|'partial', 'heads_done': n, 'heads_total': n}."""
        manifest = manifest or self.manifest(run_id)
        heads = list(requested_heads(manifest))
        done = sum(1 for l, h in heads if not self.head_missing(run_id, l, h, manifest))
        return {"status": "complete" if done == len(heads) and manifest.get("forward_done") else "partial",
                "heads_done": done, "heads_total": len(heads)}


def requested_heads(manifest: dict) -> Iterable[tuple[int, int]]:
    for layer in manifest["layers"]:
        for head in manifest["heads"]:
            yield layer, head


def requested_projections(manifest: dict) -> list[tuple[str, str, int]]:
    return [(v, m, d) for v in manifest["variants"] for m in manifest["projections"] for d in manifest["dims"]]
