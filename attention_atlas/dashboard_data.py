"""Lazy, cached reads of the run store for the dashboard.

Every read goes through :class:`Data`, which turns store problems (missing directory,
corrupt entry, unknown run) into :class:`DataError` with a one-line message the page shows.
Store API is used read-only and unchanged; derived per-run data (normalised texts,
frequencies, input index, hover contexts) and per-head data (coords, norms) are cached.

Freshness: a run can grow while it is shown (the first command serves the PCA of every head
while t-SNE/UMAP are still computed; a job extends a run). Entries that never change once
written (tokens, q/k, coordinates, images) stay cached; what a writer adds to or rewrites
(manifest, status, a head's metrics, the Matrix View built from a partial run) is dropped as soon
as the store's generation stamp (``Store.generation``: a counter and the write-ahead log, no
scan) has moved, checked at most every ``FRESH_EVERY`` seconds per process. ``progress(run)``
is the cheap per-run coverage the page polls (callbacks/live.py).

Every cache lives in one region of ``Data.caches`` (attention_atlas/core/caches.py), declared in
:data:`REGIONS` with its bound and kind; ``clear()`` and ``fresh()`` drop entries through its one
invalidation path (``Caches.invalidate``). The views' own derived results (callbacks/detail,
rollout, owninput; analysis/head_scores) are regions of the same table.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from attention_atlas.core.caches import FIXED, GROWS, STORE, Caches
from attention_atlas.core.errors import DataError  # noqa: F401 - the views import it from here
from attention_atlas.core.runinfo import RunInfo
from attention_atlas.core.tokens import joined_index
from figures.common import context_string, display_token
from figures.colors import token_frequency
from figures.matrix import build_matrix_data
from figures.search import normalised_texts
from precompute.store import CorruptEntry, Store, StoreError

log = logging.getLogger("atlas")
FRESH_EVERY = 0.2  # s: how often a process looks at the store's generation stamp
STATUS_MAX_AGE = 5.0  # s: a run's status is re-read at most this often (and whenever the store moved)
PARTIAL_MATRIX_MAX_AGE = 10.0  # s: a Matrix View with missing cells or a note is rebuilt after this

# Every cache region of a store: (name, max entries, kind, single_flight). Kinds (core/caches.py):
# FIXED never changes once written; GROWS can grow while its run is written (dropped for runs not
# known complete when the store moves); STORE is run-level state (dropped for every run then).
REGIONS = (
    ("manifest", 256, STORE, False),       # run -> (manifest dict); max_age per call
    ("info", 256, STORE, False),           # run -> (the manifest it was read from, RunInfo)
    ("status", 256, STORE, False),         # run -> Store.status
    ("progress", 256, STORE, False),       # run -> Data.progress
    ("tokens", 4, FIXED, False),           # run -> RunTokens
    ("coords", 4096, FIXED, False),        # (layer, head, variant, method, dim) -> coordinates
    ("qk", 24, FIXED, False),              # (layer, head) -> (queries, keys)
    ("norms", 4096, FIXED, False),         # (layer, head) -> ‖q‖, ‖k‖
    ("images", 32, FIXED, False),          # input -> rgb
    ("agreement", 512, FIXED, False),      # picture agreement of one head's picture
    ("metrics", 4096, GROWS, False),       # (layer, head) -> stored metrics
    ("matrix", 6, GROWS, True),            # Matrix View data; concurrent callbacks share one build
    # the views' derived results (these shared one 64-entry LRU before)
    ("roles", 8, GROWS, False),            # callbacks/detail: special tokens by role
    ("pairs", 8, GROWS, False),            # callbacks/detail: whether any input is a sentence pair
    ("value-norms", 16, GROWS, False),     # callbacks/detail: ‖v‖ of one input / of the whole run
    ("aggregate", 16, GROWS, False),       # callbacks/detail: attention by position over the run
    ("model-view", 8, GROWS, False),       # callbacks/detail: every head's thumbnail of one input
    ("rollout", 8, GROWS, False),          # callbacks/rollout: per-layer head means
    ("patterns", 8, FIXED, True),          # analysis/head_scores: a run's pattern scores (own freshness rule)
    ("own-input", 32, FIXED, False),       # callbacks/owninput: decoded entries of the own-input disk cache
)


class RunTokens:
    """A run's token table plus what the views derive from it.

    Encoder–decoder runs: ONE table of the source rows then the target rows (attention_atlas.core.encdec);
    ``side`` is 0 for a source token, 1 for a target token; ``index.rows(i)`` lists input i's
    source tokens then its target tokens; ``side_rows(i, side)`` one side in position order."""

    def __init__(self, tokens: dict, inputs: list | None, target: dict | None = None):
        from attention_atlas.core.encdec import joined_tables
        self.n_src = len(tokens["text"])
        tokens, self.side = joined_tables(tokens, target)
        self.arrays = tokens
        self.n = len(tokens["text"])
        self.n_tgt = self.n - self.n_src
        self.text = np.asarray(tokens["text"]).astype(str)
        self.norm_texts = normalised_texts(self.text)
        self.freq = token_frequency(self.text)
        self.index = joined_index(tokens, self.side)
        self.inputs = inputs or []
        self._contexts = None
        self._display = None

    def side_rows(self, input_id: int, side: int) -> np.ndarray:
        """Input ``input_id``'s rows of one side (0 source, 1 target), in position order."""
        rows = self.index.rows(input_id)
        return rows[self.side[rows] == side]

    def sides(self, run: RunInfo, layer):
        """attention_atlas.core.encdec.HeadSides of a stored layer over this table."""
        from attention_atlas.core.encdec import head_sides
        return head_sides(run, layer, self.n_src, self.n_tgt)

    @property
    def display(self) -> list[str]:
        """Every token as shown on screen (subword markers made readable)."""
        if self._display is None:
            self._display = [display_token(t) for t in self.text]
        return self._display

    @property
    def contexts(self) -> list[str]:
        if self._contexts is None:
            ctx = [""] * self.n
            for i, _ in self.index:
                for side in (0, 1):
                    rows = self.side_rows(i, side)
                    words = [display_token(t) for t in self.text[rows]]
                    for j, r in enumerate(rows):
                        ctx[r] = context_string(words, j) + (" (target)" if side else "")
            self._contexts = ctx
        return self._contexts

    def words(self, input_id: int) -> tuple[np.ndarray, list[str]]:
        rows = self.index.rows(input_id)
        return rows, [display_token(t) for t in self.text[rows]]


class Data:
    def __init__(self, cache_dir: str | os.PathLike):
        self.path = Path(cache_dir).expanduser()
        self._store: Store | None = None
        self._inode = None
        self._lock = threading.Lock()
        self.caches = Caches(REGIONS)
        c = self.caches
        self._manifest, self._info, self._status, self._progress = c["manifest"], c["info"], c["status"], c["progress"]
        self._tokens, self._coords, self._qk, self._norms = c["tokens"], c["coords"], c["qk"], c["norms"]
        self._metrics, self._images, self._agreement, self._matrix = c["metrics"], c["images"], c["agreement"], c["matrix"]
        self._generation = None
        self._fresh_at = 0.0
        self._complete: set[str] = set()  # runs whose last status read was complete (nothing to add)

    # ----------------------------------------------------------------- store access
    def _unreachable(self, exc) -> DataError:
        reason = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
        return DataError(f"the store at {self.path} is not reachable: {reason}")

    def store(self) -> Store:
        """The open store; reopened if the directory was replaced; DataError if gone."""
        db = self.path / "cache.db"
        try:
            st = os.stat(db)
        except OSError as exc:
            with self._lock:
                if self._store is not None:
                    try:
                        self._store.close()
                    except (StoreError, OSError, sqlite3.Error) as close_exc:  # it is gone anyway
                        log.warning("closing the vanished store at %s failed: %s", self.path, close_exc)
                self._store = None
            raise self._unreachable(exc) from exc
        with self._lock:
            if self._store is None or self._inode != (st.st_dev, st.st_ino):
                try:
                    if self._store is not None:
                        self._store.close()
                    self._store = Store(self.path, readonly=True)
                except StoreError as exc:
                    self._store = None
                    raise DataError(str(exc)) from exc
                if self._inode is not None:
                    self.clear()
                self._inode = (st.st_dev, st.st_ino)
            return self._store

    def _read(self, fn):
        try:
            return fn(self.store())
        except DataError:
            raise
        except CorruptEntry as exc:
            raise DataError(str(exc)) from exc
        except StoreError as exc:
            raise DataError(str(exc)) from exc
        except (OSError, sqlite3.Error, EOFError) as exc:
            raise self._unreachable(exc) from exc

    def check(self) -> None:
        self.store()

    def clear(self):
        """Forget everything cached about the store (it was replaced)."""
        self.caches.invalidate()
        self._generation = None
        self._complete.clear()

    def fresh(self, force: bool = False) -> None:
        """Forget what may have changed in the store since it was cached: once its generation stamp
        has moved, every cached manifest and status, and the metrics, Matrix View data and derived
        per-run results of each run not known to be complete (the ones being written to)."""
        now = time.monotonic()
        if not force and now - self._fresh_at < FRESH_EVERY:
            return
        self._fresh_at = now
        gen = self._read(lambda s: s.generation())
        if gen == self._generation:
            return
        first = self._generation is None
        self._generation = gen
        if first:
            return
        done = set(self._complete)
        self.caches.invalidate(kinds=(STORE,))
        self.caches.invalidate(run=lambda run: run not in done, kinds=(GROWS,))

    # ----------------------------------------------------------------- runs
    def run_ids(self) -> list[str]:
        return self._read(lambda s: s.run_ids())

    def manifest(self, run_id: str, max_age: float = 5.0) -> dict:
        self.fresh()
        return self._manifest.get(run_id, run_id, lambda: self._read(lambda s: s.manifest(run_id)),
                                  cache_none=True, keep=lambda _m, age: age < max_age)

    def info(self, run_id: str, max_age: float = 5.0) -> RunInfo:
        """The run's manifest read once into a RunInfo (the views read runs through it); rebuilt only
        when the cached manifest itself is re-read (``manifest``'s freshness rules)."""
        m = self.manifest(run_id, max_age)
        return self._info.get(run_id, run_id, lambda: (m, RunInfo.from_manifest(m)),
                              keep=lambda hit, _age: hit[0] is m)[1]

    def status(self, run_id: str) -> dict:
        self.fresh()

        def read():
            st = self._read(lambda s: s.status(run_id, self.manifest(run_id)))
            (self._complete.add if st.get("status") == "complete" else self._complete.discard)(run_id)
            return st
        return self._status.get(run_id, run_id, read, keep=lambda _st, age: age < STATUS_MAX_AGE)

    def progress(self, run_id: str) -> dict:
        """How far a run is, cheaply (one pass over the run's keys, redone only after the store has
        changed): {'run', 'status', 'forward_done', 'heads_total', 'heads_done', 'methods': {method:
        heads holding all its coordinates}, 'entries': stored projections, 'version'}. ``version``
        changes whenever a head, a projection or the run's coverage was added; the page polls it
        (callbacks/live.py) and redraws what it shows of a growing run."""
        self.fresh(force=True)
        return self._progress.get(run_id, run_id, lambda: self._read_progress(run_id))

    def _read_progress(self, run_id: str) -> dict:
        m = self.info(run_id)
        prefix = f"run/{run_id}/head/"
        keys = set(self._read(lambda s: s.keys(prefix)))
        wanted = [(v, meth, d) for v in m.variants for meth in m.projections for d in m.dims]
        methods = {meth: 0 for meth in m.projections}
        heads_done = entries = 0
        for layer in m.layers:
            for head in m.heads:
                base = f"{prefix}{layer}/{head}"
                have = {(v, meth, d) for v, meth, d in wanted if f"{base}/proj/{v}/{meth}/{d}" in keys}
                entries += len(have)
                for meth in methods:
                    methods[meth] += all((v, meth, d) in have for v in m.variants for d in m.dims)
                heads_done += (len(have) == len(wanted) and f"{base}/qk" in keys and f"{base}/metrics" in keys)
        total = m.n_heads_total
        writing = self._read(lambda s: s.writer(run_id)) is not None
        out = {"run": run_id, "forward_done": m.forward_done, "heads_total": total, "writing": writing,
               "heads_done": heads_done, "methods": methods, "entries": entries,
               "metrics": sum(1 for k in keys if k.endswith("/metrics")),
               "status": "complete" if heads_done == total and m.forward_done else "partial"}
        out["version"] = ":".join(str(x) for x in (
            int(out["forward_done"]), int(writing), heads_done, entries, out["metrics"], ",".join(m.projections),
            ",".join(map(str, m.dims)), ",".join(m.variants), total))
        (self._complete.add if out["status"] == "complete" else self._complete.discard)(run_id)
        return out

    def tokens(self, run_id: str) -> RunTokens:
        def load():
            def get(s):
                toks = s.tokens(run_id)
                if toks is None:
                    return None
                target = s.target_tokens(run_id) if hasattr(s, "target_tokens") else None
                return RunTokens(toks, s.inputs(run_id), target)
            return self._read(get)
        rt = self._tokens.get(run_id, run_id, load)
        if rt is None:
            raise DataError(f"run {run_id!r} has no tokens yet (its forward pass is still running): try again later")
        return rt

    # ----------------------------------------------------------------- heads
    def coords(self, run_id, layer, head, variant, method, dim) -> np.ndarray | None:
        return self._coords.get(run_id, (layer, head, variant, method, dim),
                                lambda: self._read(lambda s: s.coords(run_id, layer, head, variant, method, dim)))

    def qk(self, run_id, layer, head):
        return self._qk.get(run_id, (layer, head), lambda: self._read(lambda s: s.qk(run_id, layer, head)))

    def norms(self, run_id, layer, head) -> np.ndarray | None:
        def load():
            qk = self.qk(run_id, layer, head)
            if qk is None:
                return None
            q, k = qk
            return np.r_[np.linalg.norm(q, axis=1), np.linalg.norm(k, axis=1)].astype(np.float32)
        return self._norms.get(run_id, (layer, head), load)

    def metrics(self, run_id, layer, head) -> dict | None:
        self.fresh()
        return self._metrics.get(run_id, (layer, head), lambda: self._read(lambda s: s.metrics(run_id, layer, head)))

    def rho(self, run_id: str, variant: str) -> dict:
        m = self.info(run_id)
        base = variant.replace("-scaled", "")
        out = {}
        for layer in m.layers:
            for head in m.heads:
                try:
                    met = self.metrics(run_id, layer, head) or {}
                except DataError as exc:  # a damaged metrics entry: that head has no ρ, the others do
                    if not isinstance(exc.__cause__, CorruptEntry):
                        raise
                    met = {}
                r = met.get(f"spearman/{variant}", met.get(f"spearman/{base}"))
                out[(layer, head)] = None if r is None else float(r)
        return out

    def head_metrics(self, run_id: str) -> dict:
        """(layer, head) -> that head's stored metrics ({} when absent or damaged)."""
        m = self.info(run_id)
        out = {}
        for layer in m.layers:
            for head in m.heads:
                try:
                    out[(layer, head)] = self.metrics(run_id, layer, head) or {}
                except DataError as exc:  # a damaged metrics entry: that head has no figures, the others do
                    if not isinstance(exc.__cause__, CorruptEntry):
                        raise
                    out[(layer, head)] = {}
        return out

    def picture_agreement(self, run_id, layer, head, variant, method, dim, k: int | None = None) -> dict | None:
        """Per-query picture agreement of one head's picture (analysis.faithfulness.point_distortion):
        {"values" (n,), "k", "label", "definition", "undefined"}; None when the head's q/k or that
        picture is not stored."""
        from analysis.faithfulness import DISTORTION_K, point_distortion
        k = int(k or DISTORTION_K)

        def compute():
            qk = self.qk(run_id, layer, head)
            coords = self.coords(run_id, layer, head, variant, method, dim)
            tokens = self.tokens(run_id)
            if qk is None or coords is None or len(coords) != 2 * tokens.n:
                return None
            return point_distortion(qk[0], qk[1], coords, np.asarray(tokens.arrays["input_id"]),
                                    k_top=k, **self.info(run_id).layer_semantics(layer, head))
        return self._agreement.get(run_id, (layer, head, variant, method, int(dim), k), compute)

    def image(self, run_id: str, index: int) -> np.ndarray | None:
        return self._images.get(run_id, index, lambda: self._read(lambda s: s.image(run_id, index)))

    def figure_scores(self, run_id: str, figure_id: str, variant: str, method: str):
        """(scores, catalogue entry, note) of the Matrix View ordered by a faithfulness figure (the
        picture figures of the 2D ``method`` picture for the "shown" entries); scores None with a
        one-line note when the run does not hold that figure."""
        from analysis.faithfulness import NOT_COMPUTED, figure_scores, resolve_figure
        m = self.info(run_id)
        entry = resolve_figure(m, figure_id, variant, method, 2)
        if entry is None:
            return None, None, (f"no figure {figure_id!r} in run {run_id!r} (it holds "
                                f"{', '.join(m.projections)} in {', '.join(map(str, m.dims))}D); "
                                "grid order shown")
        scores = figure_scores(self.head_metrics(run_id), entry)
        if not scores:
            return None, entry, f"{entry['label']}: {NOT_COMPUTED}; grid order shown"
        return scores, entry, ""

    def misleading(self, run_id: str, variant: str, method: str, dim: int = 2) -> list:
        """Heads whose ``method`` ``dim``D picture misleads (picture ρ > 0), grid order."""
        from analysis.faithfulness import misleading_cells
        return sorted(misleading_cells(self.head_metrics(run_id), variant, method, dim))

    def order_scores(self, run_id: str, order: str, variant: str | None = None,
                     method: str | None = None) -> tuple[dict | None, str, str]:
        """Scores a Matrix View order ranks/shades by: (scores or None, short label, note).
        'grid' and 'rho' need none; a score that does not apply to the run falls back to the grid.
        A ``fig:<id>`` order (a faithfulness figure) is read by :meth:`figure_scores`."""
        if order in (None, "", "grid", "rho"):
            return None, "", ""
        from analysis.faithfulness import order_figure_id
        fid = order_figure_id(order)
        if fid is not None:
            m = self.info(run_id)
            scores, entry, note = self.figure_scores(run_id, fid, variant or m.variants[0], method or m.projections[0])
            return scores, (entry or {}).get("short", ""), note
        from analysis.head_scores import SCORE_SHORT, head_scores, na_note
        try:
            all_scores = head_scores(self, run_id)
        except (ValueError, LookupError, ArithmeticError, TypeError, MemoryError) as exc:
            # the scoring maths failed on this run: the view keeps the grid order and says why
            log.warning("head scores of run %s failed", run_id, exc_info=True)
            return None, "", f"order by {order} unavailable ({exc.__class__.__name__}: {exc}); grid order shown"
        scores = all_scores.get(order)
        if not scores:
            return None, "", f"{na_note(self.info(run_id), order)}; grid order shown"
        return scores, SCORE_SHORT.get(order, order), ""

    def matrix(self, run_id, variant, method, per_head, order, rho_threshold, budget: int = 0, kind: str | None = None):
        """The Matrix View's points; ``per_head`` points (queries + keys) of every head, 0 = all.
        Encoder–decoder runs: the grid of one head kind (attention_atlas.core.encdec; ``kind`` resolved there)."""
        from attention_atlas.core.encdec import grid_layers, grid_sides, resolve_kind
        per_head = int(per_head or 0)
        m = self.info(run_id)
        kind = resolve_kind(m, kind)
        key = (variant, method, per_head, order, round(float(rho_threshold), 3)) + ((kind,) if kind else ())
        toks = self.tokens(run_id)
        n = toks.n
        sides = None if kind is None else grid_sides(m, kind, toks.n_src, toks.n_tgt)
        layers = grid_layers(m, kind)
        rho = self.rho(run_id, variant)

        def build():
            from analysis.faithfulness import order_figure_id, picture_label
            fid = order_figure_id(order)
            score_fig = None
            if fid is not None:  # ranked by a faithfulness figure: the filter applies to it too
                scores, score_fig, note = self.figure_scores(run_id, fid, variant, method)
                label = (score_fig or {}).get("short", "")
                score_fig = score_fig if scores is not None else None
            else:
                scores, label, note = self.order_scores(run_id, order, variant, method)
            corrupt = []

            def coords(l, h):  # one damaged blob leaves its cell empty; the other heads are drawn
                try:
                    return self.coords(run_id, l, h, variant, method, 2)
                except DataError as exc:
                    if not isinstance(exc.__cause__, CorruptEntry):
                        raise
                    corrupt.append((l, h))
                    return None

            md = build_matrix_data(layers, m.heads, n, coords,
                                   rho, per_head or None, order if (scores is not None or order == "rho") else "grid",
                                   rho_threshold, scores=scores, score_label=label, note=note, budget=budget,
                                   sides=sides, score_fig=score_fig,
                                   misleading=self.misleading(run_id, variant, method, 2),
                                   misleading_label=picture_label(variant, method, 2))
            if corrupt:
                heads = ", ".join(f"L{l} H{h}" for l, h in corrupt[:4]) + (" …" if len(corrupt) > 4 else "")
                md.note = "; ".join(x for x in (md.note, f"{len(corrupt)} head(s) not drawn: a stored entry failed its "
                                                         f"checksum ({heads}); re-running the run's precompute command "
                                                         "repairs exactly those") if x)
            return md
        # a partial run fills in / an ablation job may store its scores: such a picture is not kept long
        return self._matrix.get(run_id, key, build,
                                keep=lambda md, age: not (md.missing or md.note) or age <= PARTIAL_MATRIX_MAX_AGE)
