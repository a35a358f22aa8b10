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

import hashlib
import io
import json
import os
import socket
import struct
import time
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
        raise CorruptEntry(f"store entry {key!r} is truncated or not ours: re-run with --force to recompute it")
    magic, kind, digest = _HEADER.unpack_from(blob)
    payload = bytes(blob[_HEADER.size:])
    if magic != _MAGIC or _digest(payload) != digest:
        raise CorruptEntry(f"store entry {key!r} failed its checksum (corrupt or truncated): re-run the same command to recompute it")
    try:
        if kind == _KIND_JSON:
            return json.loads(payload)
        if kind == _KIND_ARRAYS:
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
    except Exception as exc:  # checksum passed but payload unreadable: still corrupt
        raise CorruptEntry(f"store entry {key!r} could not be decoded ({exc.__class__.__name__}): re-run to recompute it") from exc
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
                raise StoreError(f"cache directory {self.path} is not writable ({exc.strerror}): choose another --cache or fix its permissions") from exc
        try:
            self._cache = diskcache.Cache(str(self.path), size_limit=2**50, eviction_policy="none",
                                          cull_limit=0, timeout=60)
        except Exception as exc:
            raise StoreError(f"cannot open the store at {self.path} ({exc}): it may be corrupt; move it away and re-run") from exc
        self._check_format()

    # ----------------------------------------------------------------- basics
    def _check_format(self) -> None:
        blob = self._cache.get("format")
        if blob is None:
            if self.readonly:
                raise StoreError(f"{self.path} is not an Attention Atlas store (no format marker): point --cache at a store made by `python -m precompute run`")
            self._cache.set("format", encode_json({"version": FORMAT_VERSION}))
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
        self._cache.set(key, blob)

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
        """Approximate bytes used by the entries under a prefix."""
        total = 0
        for key in self.keys(prefix):
            blob = self._cache.get(key)
            total += len(blob) if blob is not None else 0
        return total

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
