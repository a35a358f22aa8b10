"""A precompute run: corpus → model → q/k per head → joint embeddings → projections → store.

The run is resumable: every stage asks the store what is missing and computes only that.
Stage 1 (forward passes) writes each head's queries/keys; stage 2 (per head, in parallel
through an executor) writes projections and metrics. One process writes a run at a time
(a lock in the store); any number may read it meanwhile.
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from precompute.corpus import Corpus, load_corpus
from precompute.eta import HeadETA, head_cost, start_workers
from precompute.headwork import HeadTask, compute_head
from precompute.joint import VARIANTS
from precompute.faithfulness import figure_summary, missing_figures
from precompute.metrics import layer_semantics
from precompute.projections import ALL_METHODS, DIMS, METHODS, ProjectionParams, stable_params
from precompute.selection import parse_choices, parse_index_list
from precompute.store import FORMAT_VERSION, Store, StoreError, requested_heads

log = logging.getLogger("precompute")

# Bytes of captured q/k held in memory at once before the forward stage splits the
# layers into groups (each group is one pass over the corpus): layer-by-layer streaming.
DEFAULT_MEMORY_BUDGET = 1 << 30


class RunError(Exception):
    """A run that cannot proceed, phrased as one line naming the fix."""


@dataclass
class RunConfig:
    model: str
    corpus: str
    cache: str
    layers: str | None = None
    heads: str | None = None
    projections: str | None = None
    dims: str | None = None
    variants: str | None = "translated,raw"
    device: str = "cpu"
    batch_size: int = 16
    max_tokens: int | None = None
    max_inputs: int | None = None
    text_column: str | None = None
    target_column: str | None = None
    force: bool = False
    workers: int | None = None
    dask: str | None = None
    params: ProjectionParams = field(default_factory=ProjectionParams)
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    # two-phase order: PCA of every head first (in this process, no trustworthiness yet: ~0.05 s a
    # head), then the slower methods per head (with every metric, PCA's trustworthiness included)
    fast_first: bool = False
    # called with the run id once every head's PCA is stored (fast_first) or the run is complete:
    # the moment a dashboard has something to show for every head
    on_ready: Callable[[str], None] | None = None


@dataclass
class RunSummary:
    run_id: str
    store_path: str
    timings: dict
    status: dict
    warnings: list
    spearman_median: float | None   # joint space, Euclidean, translated (kept for callers; see figures)
    heads_computed: int = 0
    layers_forwarded: int = 0
    figures: list = field(default_factory=list)   # figure_summary(): one dict per figure


# ------------------------------------------------------------------ pure helpers
def cap_tokens(lengths: list[int], max_tokens: int | None) -> int:
    """How many leading inputs fit in max_tokens (all if no cap)."""
    if max_tokens is None:
        return len(lengths)
    total = 0
    for i, n in enumerate(lengths):
        if total + n > max_tokens:
            return i
        total += n
    return len(lengths)


def run_id_for(model_identity: str, corpus_hash: str, settings: dict) -> str:
    """Key of a run: model, corpus and every setting that changes the stored numbers."""
    blob = json.dumps({"model": model_identity, "corpus": corpus_hash, "settings": settings},
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def token_table(encoded: list, images: list | None = None) -> dict[str, np.ndarray]:
    """One row per token of every input: the fields the dashboard colours and searches by."""
    text, tok_id, input_id, pos, norm_pos, length, prow, pcol = [], [], [], [], [], [], [], []
    rgb: list[np.ndarray] = []
    for i, enc in enumerate(encoded):
        n = len(enc.tokens)
        text += list(enc.tokens)
        tok_id += list(enc.token_ids)
        input_id += [i] * n
        pos += list(range(n))
        norm_pos += [p / (n - 1) if n > 1 else 0.0 for p in range(n)]
        length += [n] * n
        if enc.patch_grid is not None and images is not None:
            rows, cols = enc.patch_grid
            r = np.full(n, -1, np.int16)
            c = np.full(n, -1, np.int16)
            grid = np.arange(rows * cols)
            r[enc.n_prefix:enc.n_prefix + rows * cols] = grid // cols
            c[enc.n_prefix:enc.n_prefix + rows * cols] = grid % cols
            prow += list(r)
            pcol += list(c)
            rgb.append(patch_colours(images[i], enc))
        else:
            prow += [-1] * n
            pcol += [-1] * n
            rgb.append(np.zeros((n, 3), np.uint8))
    return {
        "text": np.array(text, dtype=str),
        "token_id": np.array(tok_id, np.int32),
        "input_id": np.array(input_id, np.int32),
        "position": np.array(pos, np.int32),
        "norm_position": np.array(norm_pos, np.float32),
        "input_length": np.array(length, np.int32),
        "patch_row": np.array(prow, np.int16),
        "patch_col": np.array(pcol, np.int16),
        "patch_rgb": np.concatenate(rgb).astype(np.uint8) if rgb else np.zeros((0, 3), np.uint8),
    }


def patch_colours(rgb: np.ndarray, enc) -> np.ndarray:
    """Mean colour of each patch of the image as the model saw it (prefix tokens: grey mean)."""
    rows, cols = enc.patch_grid
    h, w = rgb.shape[0] // rows, rgb.shape[1] // cols
    grid = rgb[: rows * h, : cols * w].reshape(rows, h, cols, w, 3).mean(axis=(1, 3)).reshape(-1, 3)
    out = np.empty((len(enc.tokens), 3), np.float64)
    out[:] = rgb.reshape(-1, 3).mean(axis=0)
    out[enc.n_prefix:enc.n_prefix + rows * cols] = grid
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def display_image(enc) -> np.ndarray:
    """The image exactly as the model saw it, as uint8 H×W×3."""
    if getattr(enc, "display_image", None) is not None:
        return np.asarray(enc.display_image, np.uint8)
    pv = np.asarray(enc.pixel_values, np.float32)
    mean = np.asarray(getattr(enc, "image_mean", None) or (0.485, 0.456, 0.406), np.float32)
    std = np.asarray(getattr(enc, "image_std", None) or (0.229, 0.224, 0.225), np.float32)
    img = pv * std[:, None, None] + mean[:, None, None]
    return np.clip(np.round(img.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)


def layer_groups(layers: list[int], bytes_per_layer: int, budget: int) -> list[list[int]]:
    """Split layers into groups whose captured q/k fit the memory budget."""
    per_group = max(1, budget // max(1, bytes_per_layer))
    return [layers[i:i + per_group] for i in range(0, len(layers), per_group)]


def batches(n: int, size: int) -> list[range]:
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


def release_memory() -> None:
    """Return freed memory to the OS (glibc keeps freed heap pages otherwise)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def versions() -> dict:
    import importlib.metadata as md
    out = {"format": FORMAT_VERSION, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "timm", "numpy", "scikit-learn", "umap-learn", "openTSNE"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def is_seq2seq(info) -> bool:
    """An encoder–decoder model: some of its layers are cross-attention."""
    return any(a.get("kind") == "cross" for a in (getattr(info, "attention", None) or []))


def target_encodings(encoded: list) -> list:
    """What the decoder read, as encodings (for the target token table)."""
    from precompute.models.base import Encoded

    return [Encoded(tokens=list(e.target_tokens), token_ids=list(e.target_ids), truncated=e.target_truncated)
            for e in encoded]


# ------------------------------------------------------------------ the run
class Run:
    """One precompute run; ``execute()`` does the work and returns a RunSummary."""

    def __init__(self, cfg: RunConfig, progress: Callable | None = None):
        self.cfg = cfg
        self.progress = progress or _null_progress
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []
        self.heads_computed = 0
        self.layers_forwarded = 0
        self.repaired: list[str] = []

    def _stage(self, name: str, t0: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 3)

    def execute(self) -> RunSummary:
        cfg = self.cfg
        cache = Path(cfg.cache).expanduser()
        existed = cache.exists()
        fresh = not (cache / "cache.db").exists()
        store = Store(cfg.cache)  # fail early if the cache is not writable / incompatible
        try:
            return self._execute(store)
        except BaseException:
            if fresh:
                _remove_if_empty(store, cache, existed)
            raise

    def _execute(self, store: Store) -> RunSummary:
        from precompute.models import load_model

        cfg = self.cfg
        t0 = time.perf_counter()
        corpus = load_corpus(cfg.corpus, text_column=cfg.text_column, max_inputs=cfg.max_inputs,
                             target_column=cfg.target_column)
        self.warnings += corpus.warnings
        self._stage("load corpus", t0)

        t0 = time.perf_counter()
        adapter = load_model(cfg.model, device=cfg.device)
        info = adapter.info
        self.warnings += list(getattr(adapter, "load_warnings", []))
        self._stage("load model", t0)
        if (corpus.kind == "image") != (info.modality == "image"):
            raise RunError(f"model {info.name} reads {info.modality} but corpus {corpus.name!r} is {corpus.kind}: "
                           f"pick a {info.modality} corpus (e.g. {'demo-images' if info.modality == 'image' else 'demo'})")

        layers = parse_index_list(cfg.layers, info.n_layers, "layer")
        heads = parse_index_list(cfg.heads, info.n_heads, "head")
        # default: PCA, t-SNE, UMAP; the attention-graph layouts only when asked for
        methods = parse_choices(cfg.projections, ALL_METHODS, "projection") if cfg.projections else list(METHODS)
        dims = parse_choices(cfg.dims, DIMS, "dimension")
        variants = parse_choices(cfg.variants, tuple(VARIANTS), "variant")

        t0 = time.perf_counter()
        encoded, items = self._encode(adapter, corpus)
        self._stage("tokenize", t0)

        settings = {"max_tokens": cfg.max_tokens, "max_inputs": cfg.max_inputs, "text_column": cfg.text_column,
                    "params": asdict(cfg.params)}
        if cfg.target_column is not None:        # only then: run ids of earlier runs stay the same
            settings["target_column"] = cfg.target_column
        # settings added since (attention-graph layout) count only when changed: stores keep their id
        run_id = run_id_for(info.identity, corpus.hash, {**settings, "params": stable_params(cfg.params)})
        holder = store.try_lock(run_id)
        if holder is not None:
            raise RunError(f"run {run_id} is being written by another process (pid {holder.get('pid')} on "
                           f"{holder.get('host', '?')}): wait for it to finish, then re-run to complete it")
        try:
            if not cfg.force:
                self._repair(store, run_id)
            manifest = self._manifest(store, run_id, info, corpus, encoded, settings,
                                      layers, heads, methods, dims, variants)
            store.put_manifest(run_id, manifest)
            images_missing = corpus.kind == "image" and any(
                not store.has(f"run/{run_id}/image/{i}") for i in range(len(encoded)))
            if cfg.force or images_missing or not store.has(f"run/{run_id}/inputs") or store.tokens(run_id) is None:
                store.put_tokens(run_id, token_table(encoded, items if corpus.kind == "image" else None))
                store.put_inputs(run_id, corpus.labels if corpus.kind == "image" else list(items))
                if corpus.kind == "image":
                    for i, enc in enumerate(encoded):
                        store.put_image(run_id, i, display_image(enc))
                if is_seq2seq(info):
                    store.put_target_tokens(run_id, token_table(target_encodings(encoded)))
            self._forward(store, run_id, adapter, encoded, manifest)
            manifest["forward_done"] = True
            store.put_manifest(run_id, manifest)
            del adapter
            release_memory()  # the model and forward buffers go before the head workers start
            self._heads(store, run_id, manifest)
            self._ready(run_id)
            manifest["timings"] = self.timings
            store.put_manifest(run_id, manifest)
            status = store.status(run_id, manifest)
            spearman = self._spearman_median(store, run_id, manifest)
            shown = "translated" if "translated" in manifest["variants"] else manifest["variants"][0]
            figures = figure_summary([store.metrics(run_id, l, h) or {} for l, h in requested_heads(manifest)],
                                     manifest, variant=shown)
        finally:
            store.unlock(run_id)
        return RunSummary(run_id, str(store.path), self.timings, status, self.warnings, spearman,
                          self.heads_computed, self.layers_forwarded, figures)

    # ------------------------------------------------------------ stages
    def _repair(self, store: Store, run_id: str) -> None:
        """Resume check: every stored entry of the run is verified; the ones that fail their checksum
        are deleted, so the stages below recompute exactly those (and nothing else)."""
        if not store.has(f"run/{run_id}/manifest"):
            return
        t0 = time.perf_counter()
        bad = store.verify(run_id)
        for key in bad:
            store.delete(key)
        if bad:
            shown = ", ".join(k[len(f"run/{run_id}/"):] for k in bad[:4]) + (", ..." if len(bad) > 4 else "")
            self.warnings.append(f"{len(bad)} corrupt entr{'y' if len(bad) == 1 else 'ies'} of run {run_id} "
                                 f"failed the checksum and were recomputed ({shown})")
            log.warning("run %s: %d corrupt entries deleted for recomputation: %s", run_id, len(bad), bad)
        self.repaired = list(bad)
        self._stage("verify stored entries", t0)

    def _encode(self, adapter, corpus: Corpus):
        if corpus.kind == "image":
            encoded = adapter.encode_images(corpus.items)
            items = [display_image(e) for e in encoded]
        elif is_seq2seq(adapter.info):
            encoded = adapter.encode_texts(corpus.items, corpus.targets)
            items = list(corpus.items)
        else:
            if corpus.targets is not None:
                raise RunError(f"--target-column is for encoder-decoder models; {adapter.info.name} is not one: "
                               "drop --target-column")
            encoded = adapter.encode_texts(corpus.items)
            items = list(corpus.items)
        cut = [e.truncated for e in encoded if e.truncated]
        if cut:
            self.warnings.append(f"{len(cut)} inputs were longer than the model's limit of "
                                 f"{adapter.info.max_length} tokens and were truncated ({sum(cut)} tokens cut)")
        keep = cap_tokens([len(e.tokens) for e in encoded], self.cfg.max_tokens)
        if keep < len(encoded):
            dropped = len(encoded) - keep
            self.warnings.append(f"--max-tokens {self.cfg.max_tokens}: kept the first {keep} inputs, "
                                 f"dropped {dropped} ({sum(len(e.tokens) for e in encoded[keep:])} tokens)")
            if keep == 0:
                raise RunError(f"--max-tokens {self.cfg.max_tokens} is smaller than the first input "
                               f"({len(encoded[0].tokens)} tokens): raise it")
            encoded, items = encoded[:keep], items[:keep]
        return encoded, items

    def _manifest(self, store, run_id, info, corpus, encoded, settings, layers, heads, methods, dims, variants):
        old = None if self.cfg.force else store._get(f"run/{run_id}/manifest")

        def union(key, new, order=None):
            merged = set(new) | set(old[key] if old else [])
            return sorted(merged, key=(order.index if order else None))

        return {
            "id": run_id,
            "format": FORMAT_VERSION,
            "created": (old or {}).get("created") or time.strftime("%Y-%m-%dT%H:%M:%S"),
            "model": {**info.to_dict(), "source": self.cfg.model},
            "corpus": {"name": corpus.name, "kind": corpus.kind, "hash": corpus.hash,
                       "n_inputs": len(encoded), "n_tokens": int(sum(len(e.tokens) for e in encoded)),
                       "truncated_inputs": sum(1 for e in encoded if e.truncated),
                       "truncated_tokens": int(sum(e.truncated for e in encoded)),
                       "skipped": corpus.skipped, "warnings": self.warnings,
                       **({"targets": "given" if corpus.targets is not None else "generated",
                           "n_target_tokens": int(sum(len(e.target_ids) for e in encoded))}
                          if encoded and encoded[0].target_ids is not None else {})},
            "settings": settings,
            "versions": versions(),
            "layers": union("layers", layers),
            "heads": union("heads", heads),
            "projections": union("projections", methods, list(ALL_METHODS)),
            "dims": union("dims", dims),
            "variants": union("variants", variants, list(VARIANTS)),
            "forward_done": bool(old and old.get("forward_done")) and not self.cfg.force,
            "timings": (old or {}).get("timings", {}),
        }

    def _forward(self, store: Store, run_id: str, adapter, encoded: list, manifest: dict) -> None:
        t0 = time.perf_counter()
        todo = [l for l in manifest["layers"]
                if self.cfg.force or any(not store.has_qk(run_id, l, h) for h in manifest["heads"])]
        if not todo:
            return
        self.layers_forwarded = len(todo)
        info = adapter.info
        n_tokens = sum(len(e.tokens) + len(e.target_ids or []) for e in encoded)
        per_layer = n_tokens * info.n_heads * info.head_dim * 4 * 2
        groups = layer_groups(todo, per_layer, self.cfg.memory_budget)
        chunks = batches(len(encoded), self.cfg.batch_size)
        with self.progress(total=len(groups) * len(chunks), desc="forward passes", unit="batch") as bar:
            for group in groups:
                acc: dict[int, tuple[list, list]] = {l: ([], []) for l in group}
                for chunk in chunks:
                    out = adapter.capture([encoded[i] for i in chunk], layers=group)
                    for l in group:
                        acc[l][0].extend(out[l][0])
                        acc[l][1].extend(out[l][1])
                    bar.update(1)
                for l in group:
                    q_all = np.concatenate(acc[l][0], axis=1)  # (H, n_tokens, d)
                    k_all = np.concatenate(acc[l][1], axis=1)
                    for h in manifest["heads"]:
                        if self.cfg.force or not store.has_qk(run_id, l, h):
                            store.put_qk(run_id, l, h, q_all[h], k_all[h])
                    del acc[l]
        self._stage("forward passes", t0)

    def _heads(self, store: Store, run_id: str, manifest: dict) -> None:
        t0 = time.perf_counter()
        work = []
        for l, h in requested_heads(manifest):
            missing = self._missing(store, run_id, l, h, manifest)
            if missing is not None:
                work.append((l, h, missing))
        fast, slow = self._phases(store, run_id, manifest, work)
        if fast:
            self._head_phase(store, run_id, manifest, fast, "projections: PCA of every head", local=True, trust=False)
        if self.cfg.fast_first:
            self._ready(run_id)
        if slow:
            desc = "projections: t-SNE/UMAP per head" if self.cfg.fast_first else "projections per head"
            self._head_phase(store, run_id, manifest, slow, desc, local=False, trust=True)
        if work:
            self._stage("projections", t0)

    def _ready(self, run_id: str) -> None:
        if self.cfg.on_ready is not None and not getattr(self, "_ready_sent", False):
            self._ready_sent = True
            self.cfg.on_ready(run_id)

    def _phases(self, store, run_id, manifest, work):
        """Split the missing work into (fast, slow) lists of (layer, head, (variants, methods, dims,
        measure)) as ``_missing`` gives them.

        Without ``fast_first`` everything is one slow phase. With it, a head that lacks its PCA
        and something slower gets a fast task (PCA and the joint-space ρ, no trustworthiness) and
        keeps its full task for the slow phase, where PCA is recomputed for free (t-SNE/UMAP start
        from it) and all its figures measured, so the finished store is the one a one-phase run
        writes (identical coordinates; figures equal, timings aside). A head resumed after the fast
        phase (its PCA stored, its figures not) gets them from ``_missing``'s ``measure``."""
        if not self.cfg.fast_first:
            return [], work
        fast = [(l, h, (variants, ["pca"], dims, [])) for l, h, (variants, methods, dims, _) in work
                if "pca" in methods and any(m != "pca" for m in methods)]
        return fast, work

    @staticmethod
    def _stored_qk(store, run_id, layer, head):
        """The head's stored queries and keys. A read can miss while another process replaces the
        entry's file (diskcache answers "absent" then): read again; still absent is one clear line."""
        for attempt in range(3):
            got = store.qk(run_id, layer, head)
            if got is not None:
                return got
            time.sleep(0.2 * (attempt + 1))
        present = store.has_qk(run_id, layer, head)
        log.warning("run %s: L%d H%d queries/keys unreadable (entry %s)", run_id, layer, head,
                    "listed but its data is missing" if present else "missing")
        raise RunError(f"the stored queries/keys of layer {layer} head {head} of run {run_id} could not be read "
                       f"({'entry listed but its data is missing' if present else 'no entry'}): "
                       "run the same command again to recompute them")

    def _head_phase(self, store, run_id, manifest, work, desc, local, trust):
        from precompute.executor import close_executor, make_executor, run_tasks

        input_index = store.tokens(run_id)["input_id"]
        model = manifest["model"]
        target = store.target_tokens(run_id)
        # which tokens a layer's queries and keys are: source (encoder) or target (decoder) rows
        index = {"src": input_index, "tgt": None if target is None else target["input_id"]}
        sides = {"encoder": ("src", "src"), "decoder": ("tgt", "tgt"), "cross": ("tgt", "src")}
        # (a stored picture whose figures are missing costs its measurement: about one trustworthiness)
        costs = {(l, h): head_cost(v, m, d, trust=trust) + 0.3 * len(measure) for l, h, (v, m, d, measure) in work}

        def tasks():
            for l, h, (variants, methods, dims, measure) in work:
                q, k = self._stored_qk(store, run_id, l, h)
                stored = {key: store.coords(run_id, l, h, *key) for key in measure}
                sem = layer_semantics(model, l, h)
                kind = (model.get("attention") or [{}] * (l + 1))[l].get("kind", "self")
                q_side, k_side = sides.get(kind, ("src", "src"))
                task = HeadTask(layer=l, head=h, queries=q, keys=k, input_index=index[q_side],
                                key_index=index[k_side] if k_side != q_side else None,
                                causal=sem["causal"], scale=sem["scale"], window=sem["window"],
                                softcap=sem["softcap"], bias=sem.get("bias"), variants=variants,
                                methods=methods, dims=dims, params=self.cfg.params,
                                stored={key: c for key, c in stored.items() if c is not None})
                if not trust:
                    task.trust_sample = 0
                yield task

        warned: list[tuple[int, int, str]] = []
        executor = None
        with self.progress(total=len(work), desc=desc, unit="head") as bar:
            show = getattr(bar, "set_postfix_str", None) or (lambda *a, **k: None)
            eta = HeadETA(list(costs.values()))
            try:
                if local:  # cheap work: no process pool to start, nothing one-off to pay
                    results = (compute_head(t) for t in tasks())
                    eta.workers = 1
                else:
                    methods = {m for _, _, (_, ms, _, _) in work for m in ms}
                    warm = bool({"umap", "tsne", "attn-umap", "attn-tsne"} & methods)
                    show(("starting workers and compiling UMAP/t-SNE once (one-off, not counted in the ETA)"
                          if warm else "starting workers (one-off, not counted in the ETA)"))
                    # warming the workers up (compiling UMAP's numba code, loading openTSNE) only pays off
                    # when those projections are computed; a PCA-only run starts its workers sooner without it
                    executor = make_executor(workers=self.cfg.workers, dask_address=self.cfg.dask, warm=warm)
                    t_warm = time.perf_counter()
                    eta.workers = start_workers(executor)
                    self._stage("start workers", t_warm)
                    results = run_tasks(executor, tasks(), compute_head)
                show(eta.text())
                for result in results:
                    for (variant, method, dim), coords in result.coords.items():
                        if self.cfg.force or not store.has_coords(run_id, result.layer, result.head, variant, method, dim):
                            store.put_coords(run_id, result.layer, result.head, variant, method, dim, coords)
                    old = store.metrics(run_id, result.layer, result.head) or {}
                    merged = {**old, **result.metrics, "warnings": sorted(set(old.get("warnings", []) + list(result.warnings)))}
                    store.put_metrics(run_id, result.layer, result.head, merged)
                    if result.warnings:
                        warned.append((result.layer, result.head, result.warnings[0]))
                    if trust:  # a head's fast task is followed by its full one: count it once
                        self.heads_computed += 1
                    eta.done(float(result.metrics.get("time/total") or 0.0), costs[(result.layer, result.head)])
                    show(eta.text(), refresh=False)
                    bar.update(1)
            finally:
                if executor is not None:
                    close_executor(executor)
                if warned:
                    l, h, first = warned[0]
                    self.warnings.append(f"{len(warned)} heads had projection warnings (e.g. L{l} H{h}: {first}); "
                                         "each head's list is in its metrics ('warnings', also in export)")

    def _missing(self, store, run_id, layer, head, manifest):
        """(variants, methods, dims, measure) to compute for this head, or None if it is done.

        ``variants`` × ``methods`` × ``dims``: projections to compute (with their figures);
        ``measure``: stored projections whose figures are missing (stores written before a
        figure existed): their figures are computed from the stored coordinates.
        """
        variants, methods, dims = list(manifest["variants"]), list(manifest["projections"]), list(manifest["dims"])
        if self.cfg.force:
            return variants, methods, dims, []
        gaps = [(v, m, d) for v in variants for m in methods for d in dims
                if not store.has_coords(run_id, layer, head, v, m, d)]
        metrics = store.metrics(run_id, layer, head) or {}
        run_metric = self.cfg.params.metric
        measure = [(v, m, d) for v in variants for m in methods for d in dims
                   if (v, m, d) not in gaps and missing_figures(metrics, [v], [m], [d], run_metric)]
        joint = [v for v in variants if missing_figures(metrics, [v], [], [], run_metric)]
        if not gaps and not measure and not joint:
            return None
        return (sorted({g[0] for g in gaps} | {g[0] for g in measure} | set(joint), key=list(VARIANTS).index),
                sorted({g[1] for g in gaps}, key=list(ALL_METHODS).index),
                sorted({g[2] for g in gaps}),
                measure)

    def _spearman_median(self, store, run_id, manifest) -> float | None:
        values = []
        for l, h in requested_heads(manifest):
            m = store.metrics(run_id, l, h) or {}
            if m.get("spearman/translated") is not None:
                values.append(m["spearman/translated"])
        return float(np.median(values)) if values else None


def _remove_if_empty(store: Store, path: Path, existed: bool) -> None:
    """A run that failed before storing anything leaves no empty store behind (only a store this
    run created; an existing folder keeps everything that was in it before)."""
    import shutil

    try:
        empty = not store.run_ids()
        store.close()
    except (StoreError, OSError, sqlite3.Error) as exc:  # leave it as it is
        log.warning("could not check whether the store at %s is empty (%s); left as it is", path, exc)
        return
    if not empty:
        return
    try:
        if not existed:
            shutil.rmtree(path)
        else:
            for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
                (path / name).unlink(missing_ok=True)
    except OSError:
        pass


class _null_progress:
    def __init__(self, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass


def run(cfg: RunConfig, progress: Callable | None = None) -> RunSummary:
    return Run(cfg, progress).execute()
