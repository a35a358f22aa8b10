"""Export one head of a stored run for users' own analysis (.npz, or .csv for one projection)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from precompute.faithfulness import describe, is_figure
from precompute.store import Store, StoreError


def resolve_run(store: Store, run: str) -> str:
    """A full run id from an id or a unique prefix of one."""
    ids = store.run_ids()
    if run in ids:
        return run
    hits = [i for i in ids if i.startswith(run)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise StoreError(f"unknown run {run!r}: `python -m precompute list --cache {store.path}` shows the stored runs")
    raise StoreError(f"run prefix {run!r} is ambiguous ({', '.join(hits)}): give more characters")


def check_head(manifest: dict, layer: int, head: int) -> None:
    if layer not in manifest["layers"]:
        raise StoreError(f"unknown layer {layer}: run {manifest['id']} stores layers {_ranges(manifest['layers'])}")
    if head not in manifest["heads"]:
        raise StoreError(f"unknown head {head}: run {manifest['id']} stores heads {_ranges(manifest['heads'])}")


def _ranges(values: list[int]) -> str:
    return ",".join(map(str, values)) if len(values) < 8 else f"{values[0]}-{values[-1]}"


def head_arrays(store: Store, run_id: str, layer: int, head: int, variant: str = "translated") -> dict:
    """Everything stored about a head, as the arrays the .npz export contains."""
    manifest = store.manifest(run_id)
    check_head(manifest, layer, head)
    qk = store.qk(run_id, layer, head)
    if qk is None:
        raise StoreError(f"layer {layer} head {head} of run {run_id} has no data yet (the run is partial): re-run it to complete")
    tokens = store.tokens(run_id)
    out = {"queries": qk[0], "keys": qk[1], "tokens": tokens["text"], "input_id": tokens["input_id"],
           "token_id": tokens["token_id"], "position": tokens["position"],
           "norm_position": tokens["norm_position"]}
    if manifest["model"]["modality"] == "image":
        out.update(patch_row=tokens["patch_row"], patch_col=tokens["patch_col"], patch_rgb=tokens["patch_rgb"])
    for method in manifest["projections"]:
        for dim in manifest["dims"]:
            coords = store.coords(run_id, layer, head, variant, method, dim)
            if coords is not None:
                out[f"coords_{method}_{dim}d"] = coords
    metrics = store.metrics(run_id, layer, head) or {}
    params = metrics.get("figure_params")
    definitions = {k: describe(k, params)["label"] + ": " + describe(k, params)["definition"]
                   for k in metrics if is_figure(k)}
    out["metrics"] = np.array(json.dumps({**metrics, "layer": layer, "head": head, "run": run_id,
                                          "variant": variant, "model": manifest["model"]["name"],
                                          "figure_definitions": definitions}))
    return out


def _out_error(out: Path, exc: OSError) -> StoreError:
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"the disk holding {out.parent} is full: free some space or give --out on another disk")
    if exc.errno == errno.EISDIR or out.is_dir():
        return StoreError(f"--out {out} is a folder: give a file name, e.g. {out / 'head.npz'}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreError(f"--out {out} cannot be written ({exc.strerror}): choose a folder you can write to")
    if exc.errno == errno.ENOTDIR:
        return StoreError(f"--out {out}: part of its folder path is a file ({exc.strerror}): fix the path")
    return StoreError(f"--out {out} cannot be written ({exc.strerror or exc}): choose another file")


def _write_atomic(out: str | Path, mode: str, write) -> Path:
    """Write through ``<out>.tmp`` then rename; on any failure no ``.tmp`` is left and the error is one line."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise StoreError(f"--out {out} is a folder: give a file name, e.g. {out / 'head.npz'}")
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode, **({"newline": "", "encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
        tmp.replace(out)
    except OSError as exc:
        raise _out_error(out, exc) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return out


def export_npz(arrays: dict, out: str | Path) -> Path:
    return _write_atomic(out, "wb", lambda f: np.savez(f, **arrays))


def export_csv(arrays: dict, method: str, dim: int, out: str | Path) -> Path:
    """One row per point (queries first, then keys) with its token fields and coordinates."""
    key = f"coords_{method}_{dim}d"
    if key not in arrays:
        have = sorted(k[7:] for k in arrays if k.startswith("coords_"))
        raise StoreError(f"projection {method} {dim}d is not stored for this head (stored: {', '.join(have) or 'none'}): "
                         "pick one of those or re-run precompute with it")
    coords = arrays[key]
    n = len(arrays["tokens"])

    def write(f):
        w = csv.writer(f)
        w.writerow(["kind", "token", "input_id", "position", *("xyz"[:dim])])
        for i in range(2 * n):
            t = i % n
            w.writerow(["query" if i < n else "key", arrays["tokens"][t], int(arrays["input_id"][t]),
                        int(arrays["position"][t]), *(f"{c:.6g}" for c in coords[i])])
    return _write_atomic(out, "w", write)
