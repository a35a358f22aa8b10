"""2-D / 3-D projections of one head's joint query–key cloud: PCA, t-SNE, UMAP.

Speed tricks (all keep the result a faithful t-SNE / UMAP of the same data):

* ONE exact kNN graph (:func:`precompute.knn.exact_knn`, float32 BLAS, top-k by
  ``torch.topk`` when torch is available) with
  ``k = max(3 * perplexity, umap_n_neighbors - 1)`` is computed per input array and
  shared by t-SNE (openTSNE ``PerplexityBasedNN`` on a ``PrecomputedNeighbors``
  index) and UMAP (``precomputed_knn=``).  Neither library builds its own
  approximate index.
* PCA is computed once (3 components; 2-D is its first two columns) and used
  to initialise t-SNE and UMAP (deterministic, faster convergence than random).
* t-SNE 2-D uses openTSNE's FFT-interpolated gradient.  FFT only exists for
  2-D, so 3-D t-SNE uses openTSNE's Barnes–Hut; when the 2-D t-SNE was also
  computed, the 3-D run is initialised from it (third axis = PCA component 3)
  and skips most of early exaggeration, which is where BH time goes
  (``tsne3d_from_2d``; measured in ``bench/precompute.py``).
* Fewer, sufficient optimisation epochs (defaults below; trustworthiness is
  checked against the scikit-learn / umap-learn reference in the bench).

Degenerate inputs (fewer than ``min_points`` points or distinct points, zero
vectors with the cosine metric, non-finite output) never raise: t-SNE/UMAP
fall back to (padded) PCA and a message is added to ``result.warnings`` and
logged.
"""
from __future__ import annotations

import logging
import time
import warnings as _warnings
from dataclasses import dataclass, asdict
from typing import Callable, Iterable

import numpy as np

from .knn import exact_knn

log = logging.getLogger(__name__)

METHODS = ("pca", "tsne", "umap")            # the default projections
ATTN_METHODS = ("attn-umap", "attn-tsne")    # attention-graph layouts (only when asked for)
ALL_METHODS = METHODS + ATTN_METHODS
DIMS = (2, 3)

__all__ = ["METHODS", "ATTN_METHODS", "ALL_METHODS", "DIMS", "ProjectionParams", "ProjectionResult", "project",
           "pca_coords", "needed_k", "stable_params", "attention_graph"]


@dataclass
class ProjectionParams:
    """Projection settings.  Defaults are chosen for speed at ~1k–20k points per head.

    seed: seeds PCA noise, t-SNE and UMAP; same input + params -> identical output.
    metric: "cosine" (AttentionViz) or "euclidean"; used for the shared kNN graph.
    tsne_perplexity: 30 (AttentionViz used 50 for text, 20 for ViT).  kNN k = 3*perplexity.
    tsne_early_iter / tsne_n_iter: early-exaggeration (x12) and normal iterations
        for 2-D FFT t-SNE; default 60 / 140 (openTSNE's defaults are 250 / 500).  With
        PCA init and exact affinities this reaches the trustworthiness of sklearn's
        300-iteration cosine t-SNE within ~0.007 at 10k points (bench/precompute.py).
    tsne_3d_*: 3-D Barnes–Hut t-SNE.  If ``tsne3d_from_2d`` and 2-D t-SNE is
        computed too, 3-D starts from the 2-D layout (+ PCA axis 3) and runs
        ``tsne_3d_from2d_early_iter`` + ``tsne_3d_from2d_n_iter`` iterations (default
        0 + 10: BH 3-D costs ~60 ms/iteration at 10k points, and 10 iterations from
        the converged 2-D layout already give 3-D trustworthiness within ~0.004 of
        sklearn's).  Otherwise ``tsne_3d_early_iter`` + ``tsne_3d_n_iter`` (125 + 375)
        from PCA.  The affinity matrix P is computed once and shared by 2-D and 3-D.
    tsne_theta: Barnes–Hut opening angle for 3-D (0.8: ~2.5x faster than 0.5 per iteration).
    tsne_ints_in_interval / tsne_min_num_intervals: FFT grid of 2-D t-SNE; openTSNE's
        defaults (1 / 50) put one interval per embedding unit, so the grid grows with the
        spread of the layout (~130 units at 10k points -> ~80 ms/iteration); 3 / 30 is
        ~3.5x faster at a trustworthiness cost of < 0.005 (measured, bench/precompute.py).
    umap_n_neighbors / umap_min_dist: 15 / 0.1 as AttentionViz (ViT used 10).
    umap_n_epochs: UMAP optimisation epochs, default 50 (umap-learn default: 200 for
        n>10k, else 500).  From the PCA init 50 epochs give trustworthiness ~0.94 / 0.97
        (2-D / 3-D) at 10k points vs ~0.83 / 0.85 for umap-learn's random-init default.
    knn_block: rows per block of the exact kNN (1024: the (block, n) float32 similarity
        block stays ~40 MB at 10k points).
    attn_*: the attention-graph layouts ("attn-umap", "attn-tsne"; :func:`attention_graph`):
        attn_query_keys: each query linked to the keys of its own input it scores highest by
            q·k (within the causal prefix for decoders); attn_corpus_keys: to that many more
            keys scoring highest across the whole corpus (0 = off); attn_key_queries: each key
            linked to the queries of its input that score it highest; attn_same_role: each query
            (key) linked to its nearest queries (keys) in the joint space (``metric``) so
            clusters hold; attn_weight: weight of the attention edges against the same-role
            ones; attn_n_epochs: UMAP epochs of attn-umap.  Defaults 4 / 0 / 2 / 30 / 0.3 / 100:
            chosen on 4 MiniLM heads (demo corpus, first 2,475 tokens) as the setting whose picture
            Spearman beat UMAP's on every head with trustworthiness within 0.003 of UMAP's (more
            attention weight or more attention edges: stronger picture ρ, lower trustworthiness);
            measured on the three built-in models in bench/RESULTS.md.
    min_points: below this many (distinct) points t-SNE/UMAP fall back to PCA.
    n_jobs: threads for openTSNE (1: parallelism is across heads/processes).
    """

    seed: int = 0
    metric: str = "cosine"
    tsne_perplexity: float = 30.0
    tsne_early_iter: int = 60
    tsne_n_iter: int = 140
    tsne_exaggeration: float = 12.0
    tsne_ints_in_interval: float = 3.0
    tsne_min_num_intervals: int = 30
    tsne_3d_early_iter: int = 125
    tsne_3d_n_iter: int = 375
    tsne3d_from_2d: bool = True
    tsne_3d_from2d_early_iter: int = 0
    tsne_3d_from2d_n_iter: int = 10
    tsne_theta: float = 0.8
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    umap_n_epochs: int = 50
    min_points: int = 10
    n_jobs: int = 1
    knn_block: int = 1024
    attn_query_keys: int = 4
    attn_corpus_keys: int = 0
    attn_key_queries: int = 2
    attn_same_role: int = 30
    attn_weight: float = 0.3
    attn_n_epochs: int = 100

    def to_dict(self) -> dict:
        return asdict(self)


#: settings added after stores were written: part of a run's id only when changed from these
_ADDED_LATER = {name: getattr(ProjectionParams(), name) for name in
                ("attn_query_keys", "attn_corpus_keys", "attn_key_queries", "attn_same_role", "attn_weight",
                 "attn_n_epochs")}


def stable_params(params: "ProjectionParams") -> dict:
    """``params`` as a dict for a run's id: settings added later are left out while they keep
    their default, so stores written before they existed keep their run id."""
    d = asdict(params)
    return {k: v for k, v in d.items() if not (k in _ADDED_LATER and v == _ADDED_LATER[k])}


class ProjectionResult(dict):
    """``{(method, dim): float32 (n, dim)}`` plus ``.warnings`` (list[str]),
    ``.timings`` (stage -> seconds) and ``.knn`` (the shared (idx, dist) or None)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.warnings: list[str] = []
        self.timings: dict[str, float] = {}
        self.knn = None


def needed_k(params: ProjectionParams, methods: Iterable[str]) -> int:
    """Neighbours (excluding self) the shared kNN graph must provide."""
    k = 0
    methods = set(methods)
    if "tsne" in methods:
        k = max(k, int(3 * params.tsne_perplexity))
    if "umap" in methods:
        k = max(k, int(params.umap_n_neighbors) - 1)  # umap counts self as a neighbour
    return k


def pca_coords(X: np.ndarray, n_components: int = 3) -> np.ndarray:
    """PCA scores (float64, (n, n_components)), same as sklearn ``PCA(n).fit_transform``
    (svd_flip sign convention) via the d×d covariance eigendecomposition.
    Components beyond ``rank`` / ``min(n, d)`` are zero-padded."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    out = np.zeros((n, n_components))
    if n < 2 or d == 0:
        return out
    Xc = X - X.mean(axis=0)
    C = Xc.T @ Xc
    evals, evecs = np.linalg.eigh(C)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    m = min(n_components, d, n - 1)
    tol = max(evals[0], 0.0) * 1e-12 if len(evals) else 0.0
    m = min(m, int(np.sum(evals > tol)))
    if m <= 0:
        return out
    V = evecs[:, :m]
    # sklearn's svd_flip (u_based_decision=False): largest |component| entry positive
    max_abs = np.argmax(np.abs(V), axis=0)
    signs = np.sign(V[max_abs, np.arange(m)])
    signs[signs == 0] = 1.0
    V = V * signs
    out[:, :m] = Xc @ V
    return out


def _scaled_init(Y: np.ndarray, target_std: float, rng: np.random.Generator | None = None,
                 jitter: float = 0.01) -> np.ndarray:
    """Rescale so axis 0 has std ``target_std``; add seeded jitter (``jitter`` × std) so
    the seed matters and exactly coincident points are separated (as openTSNE's pca init)."""
    Y = np.array(Y, dtype=np.float64)
    s = Y[:, 0].std() if len(Y) else 0.0
    if s > 0:
        Y = Y / s * target_std
    if rng is not None and jitter > 0:
        Y += rng.normal(scale=jitter * target_std, size=Y.shape)
    return Y


def _jitter_if_degenerate(Y: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Add tiny noise to axes with zero spread (UMAP min-max rescales each axis)."""
    Y = np.array(Y, dtype=np.float64)
    spread = Y.max(axis=0) - Y.min(axis=0) if len(Y) else np.zeros(Y.shape[1])
    bad = ~(spread > 0)
    if bad.any():
        Y[:, bad] += rng.normal(scale=scale, size=(len(Y), int(bad.sum())))
    return Y


def _tsne(P_aff, init: np.ndarray, params: ProjectionParams, early: int, n_iter: int,
          method: str, seed: int) -> np.ndarray:
    from openTSNE import TSNEEmbedding

    n = init.shape[0]
    emb = TSNEEmbedding(
        init, P_aff, negative_gradient_method=method, theta=params.tsne_theta,
        random_state=seed, n_jobs=params.n_jobs, verbose=False,
        ints_in_interval=params.tsne_ints_in_interval,
        min_num_intervals=params.tsne_min_num_intervals,
    )
    if early > 0:
        emb = emb.optimize(n_iter=early, exaggeration=params.tsne_exaggeration, momentum=0.8,
                           learning_rate=max(n / params.tsne_exaggeration, 1.0))
    if n_iter > 0:
        emb = emb.optimize(n_iter=n_iter, exaggeration=1.0, momentum=0.8,
                           learning_rate=max(float(n), 1.0))
    return np.asarray(emb, dtype=np.float64)


def _umap(X: np.ndarray, knn_idx: np.ndarray, knn_dist: np.ndarray, init: np.ndarray,
          dim: int, params: ProjectionParams) -> np.ndarray:
    import umap

    n = X.shape[0]
    nn = int(min(params.umap_n_neighbors, n))
    # umap's kNN convention includes the point itself at distance 0 in column 0
    kidx = np.empty((n, nn), np.int32)
    kdist = np.empty((n, nn), np.float32)
    kidx[:, 0] = np.arange(n)
    kdist[:, 0] = 0.0
    kidx[:, 1:] = knn_idx[:, : nn - 1]
    kdist[:, 1:] = knn_dist[:, : nn - 1]
    reducer = umap.UMAP(
        n_components=dim, n_neighbors=nn, min_dist=params.umap_min_dist,
        metric=params.metric, random_state=params.seed, init=init.astype(np.float32),
        n_epochs=params.umap_n_epochs, precomputed_knn=(kidx, kdist, None),
        n_jobs=1, verbose=False, low_memory=True,
    )
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # "no NNDescent search index", n_jobs/random_state notes
        Y = reducer.fit_transform(X)
    return np.asarray(Y, dtype=np.float64)


def _top_by_score(S: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the ``k`` columns of highest score among ``valid`` ones (−1 where fewer), and
    their gap to the row's best score (>= 0)."""
    Sm = np.where(valid, S, -np.inf)
    k = min(k, S.shape[1])
    order = np.argsort(-Sm, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(Sm, order, axis=1)
    ok = np.isfinite(top)
    gap = np.where(ok, top[:, :1] - top, 0.0)
    return np.where(ok, order, -1), gap


def _pad_rows(idx: np.ndarray, dist: np.ndarray):
    """umap's kNN arrays: float32 distances; a missing neighbour (−1) gets its row's largest
    distance, so it changes no calibration (umap skips −1 entries)."""
    dist = np.asarray(dist, np.float64).copy()
    miss = idx < 0
    if miss.any():
        rowmax = np.where(miss, -np.inf, dist).max(axis=1)
        rowmax = np.where(np.isfinite(rowmax), rowmax, 1.0)
        dist[miss] = np.broadcast_to(rowmax[:, None], dist.shape)[miss]
    # int32 / float32: the signatures umap-learn's own kNN path compiles (no extra numba compile)
    return np.ascontiguousarray(idx, np.int32), np.ascontiguousarray(dist, np.float32)


def _fuzzy(n: int, idx: np.ndarray, dist: np.ndarray, seed: int):
    """UMAP's fuzzy simplicial set (symmetric, fuzzy union) of a precomputed neighbour list."""
    from umap.umap_ import fuzzy_simplicial_set

    idx, dist = _pad_rows(idx, dist)
    G, _, _ = fuzzy_simplicial_set(np.zeros((n, 1), np.float32), idx.shape[1], np.random.RandomState(seed),
                                   "euclidean", knn_indices=idx, knn_dists=dist)
    return G.tocsr()


def attention_graph(X: np.ndarray, q: np.ndarray, k: np.ndarray, input_index: np.ndarray, causal: bool,
                    scale: float, params: "ProjectionParams"):
    """The neighbour graph of the attention-graph layouts, over the ``2n`` joint points
    (queries ``0..n-1``, keys ``n..2n-1``), as a symmetric scipy CSR matrix of weights in [0, 1].

    Attention part: each query is linked to the ``attn_query_keys`` keys of its own input it
    scores highest (``scale * q·k``; causal prefix for decoders) and, if ``attn_corpus_keys``,
    to that many keys scoring highest across the corpus; each key to the ``attn_key_queries``
    queries of its input that score it highest.  The score gap to the row's best
    (``−log`` of the attention ratio, within an input) is the neighbour distance.  Same-role
    part: each query's (key's) ``attn_same_role`` nearest queries (keys) in the joint space
    (``params.metric``).  Each part becomes a UMAP fuzzy simplicial set (its own per-point
    calibration, as umap-learn does for a kNN list); the graph is their fuzzy union with the
    attention part weighted by ``attn_weight``.
    """
    import scipy.sparse as sp

    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    input_index = np.asarray(input_index)
    n = len(q)
    aq, ak = int(params.attn_query_keys), int(params.attn_key_queries)
    ac = int(params.attn_corpus_keys)
    width = max(aq + ac, ak, 1)
    idx = np.full((2 * n, width), -1, np.int64)
    dist = np.zeros((2 * n, width))
    order = np.argsort(input_index, kind="stable")
    _, starts = np.unique(input_index[order], return_index=True)
    for s, e in zip(starts, np.append(starts[1:], n)):
        rows = order[s:e]
        L = len(rows)
        S = scale * (q[rows] @ k[rows].T)            # (query, key) logits of this input
        valid = (np.arange(L)[None, :] <= np.arange(L)[:, None]) if causal else np.ones((L, L), bool)
        if aq:
            top, gap = _top_by_score(S, valid, aq)
            idx[rows, :top.shape[1]] = np.where(top >= 0, n + rows[np.maximum(top, 0)], -1)
            dist[rows, :top.shape[1]] = gap
        if ak:
            top, gap = _top_by_score(S.T, valid.T, ak)
            idx[n + rows, :top.shape[1]] = np.where(top >= 0, rows[np.maximum(top, 0)], -1)
            dist[n + rows, :top.shape[1]] = gap
    if ac:
        kk = np.ascontiguousarray(k.T)
        for b in range(0, n, 1024):
            e = min(n, b + 1024)
            S = scale * (q[b:e] @ kk)
            # keys already linked within the input are not counted twice
            for r in range(e - b):
                have = idx[b + r, :aq]
                S[r, have[have >= 0] - n] = -np.inf
            part = np.argpartition(-S, min(ac, n - 1), axis=1)[:, :ac]
            top = np.take_along_axis(S, part, axis=1)
            first = idx[b:e, 0]
            own_best = np.where(first >= 0, scale * np.einsum("ij,ij->i", q[b:e], k[np.maximum(first - n, 0)]),
                                -np.inf)
            best = np.maximum(own_best, top.max(axis=1))
            ok = np.isfinite(top)
            idx[b:e, aq:aq + ac] = np.where(ok, n + part, -1)
            dist[b:e, aq:aq + ac] = np.where(ok, np.maximum(best[:, None] - top, 0.0), 0.0)
    G = _fuzzy(2 * n, idx, dist, params.seed)
    G.data *= float(params.attn_weight)
    np.minimum(G.data, 1.0, out=G.data)
    if params.attn_same_role:
        sr = int(min(params.attn_same_role, n - 1))
        qi, qd = exact_knn(np.asarray(X[:n]), sr, metric=params.metric, block=params.knn_block)
        ki, kd = exact_knn(np.asarray(X[n:]), sr, metric=params.metric, block=params.knn_block)
        H = _fuzzy(2 * n, np.vstack([qi, ki + n]), np.vstack([qd, kd]), params.seed)
        G = (G + H - G.multiply(H)).tocsr()         # fuzzy union
    G.eliminate_zeros()
    return sp.csr_matrix(G)


def _graph_umap(G, init: np.ndarray, dim: int, params: ProjectionParams) -> np.ndarray:
    from umap.umap_ import find_ab_params, simplicial_set_embedding

    a, b = find_ab_params(1.0, params.umap_min_dist)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        Y, _ = simplicial_set_embedding(
            np.zeros((G.shape[0], 1), np.float32), G.tocoo(), dim, 1.0, a, b, 1.0, 5,
            int(params.attn_n_epochs), init.astype(np.float32), np.random.RandomState(params.seed),
            "euclidean", {}, False, {}, False)
    return np.asarray(Y, dtype=np.float64)


def _attention_layouts(res, X, methods, dims, params, pca_init, rng, qk, input_index, causal, scale,
                       warn, stage, finite_or_pca):
    """attn-umap / attn-tsne of the attention graph (see :func:`attention_graph`)."""
    t0 = time.perf_counter()
    try:
        G = attention_graph(X, qk[0], qk[1], input_index, causal, scale, params)
    except Exception as e:  # noqa: BLE001 - third-party algorithm edge: PCA instead, said in the warnings
        warn(f"attention graph failed ({type(e).__name__}: {e}); PCA used instead")
        for m in methods:
            for d in dims:
                res[(m, d)] = pca_init[:, :d].astype(np.float32)
        return
    stage("attn_graph", t0)
    if "attn-umap" in methods:
        for d in sorted(dims):
            t0 = time.perf_counter()
            Y = None
            try:
                init = pca_init[:, :d]
                sc = np.abs(init).max()
                Y = _graph_umap(G, init / sc * 10.0 if sc > 0 else init, d, params)
            except Exception as e:  # noqa: BLE001 - third-party algorithm edge (finite_or_pca below)
                warn(f"attention-graph UMAP {d}D failed ({type(e).__name__}: {e})")
            res[("attn-umap", d)] = finite_or_pca("attention-graph UMAP", Y, d)
            stage(f"attn-umap{d}d", t0)
    if "attn-tsne" in methods:
        from openTSNE.affinity import PrecomputedAffinities

        P = PrecomputedAffinities(G.astype(np.float64), normalize=True)
        y2 = None
        for d in sorted(dims):
            t0 = time.perf_counter()
            Y = None
            try:
                if d == 2 or y2 is None:
                    init = _scaled_init(pca_init[:, :d], 1e-4, rng)
                    Y = _tsne(P, init, params, params.tsne_early_iter, params.tsne_n_iter,
                              "fft" if d == 2 else "bh", params.seed)
                    if d == 2:
                        y2 = Y
                else:
                    s2 = y2.std(axis=0).mean()
                    z = pca_init[:, 2:3]
                    zs = z.std()
                    z = z / zs * (0.1 * s2) if zs > 0 else z
                    Y = _tsne(P, np.hstack([y2, z]), params, params.tsne_3d_from2d_early_iter,
                              params.tsne_3d_from2d_n_iter, "bh", params.seed)
            except Exception as e:  # noqa: BLE001 - third-party algorithm edge (finite_or_pca below)
                warn(f"attention-graph t-SNE {d}D failed ({type(e).__name__}: {e})")
            res[("attn-tsne", d)] = finite_or_pca("attention-graph t-SNE", Y, d)
            stage(f"attn-tsne{d}d", t0)


def project(X: np.ndarray, methods=METHODS, dims=DIMS, params: ProjectionParams | None = None,
            knn: tuple[np.ndarray, np.ndarray] | None = None,
            progress: Callable[[str, float], None] | None = None,
            qk: tuple[np.ndarray, np.ndarray] | None = None, input_index: np.ndarray | None = None,
            causal: bool = False, scale: float = 1.0) -> ProjectionResult:
    """Project ``X`` (n, d) with each of ``methods`` into each of ``dims``.

    Returns a :class:`ProjectionResult` (a dict ``{(method, dim): float32 (n, dim)}``
    with ``.warnings``, ``.timings`` and ``.knn``).  Deterministic for a given
    input and ``params.seed``.  ``knn``: a precomputed ``(indices, distances)``
    from :func:`exact_knn` on ``X`` with ``params.metric`` (self excluded); it
    is recomputed if it has too few columns.  ``progress(stage, seconds)`` is
    called after each stage ("pca", "knn", "tsne2d", ...).  The attention-graph layouts
    (``attn-umap``, ``attn-tsne``) also need ``qk`` (the untransformed queries and keys, n
    rows each, ``X`` being their 2n-row joint embedding), ``input_index``, ``causal``, ``scale``.
    """
    params = params or ProjectionParams()
    methods = tuple(methods)
    dims = tuple(int(d) for d in dims)
    for m in methods:
        if m not in ALL_METHODS:
            raise ValueError(f"unknown method {m!r}; expected one of {ALL_METHODS}")
    attn = [m for m in methods if m in ATTN_METHODS]
    if attn and (qk is None or input_index is None):
        raise ValueError(f"{attn[0]} needs the queries/keys and input_index (qk=, input_index=)")
    for d in dims:
        if d not in DIMS:
            raise ValueError(f"unsupported dim {d}; expected one of {DIMS}")
    res = ProjectionResult()
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got {X.shape}")
    n = X.shape[0]
    X = np.ascontiguousarray(X, dtype=np.float32)

    def warn(msg: str) -> None:
        res.warnings.append(msg)
        log.info(msg)  # returned to the caller, stored per head and summarised by the run

    def stage(name: str, t0: float) -> None:
        dt = time.perf_counter() - t0
        res.timings[name] = res.timings.get(name, 0.0) + dt
        if progress is not None:
            progress(name, dt)

    if not np.all(np.isfinite(X)):
        warn("input contains non-finite values; replaced by 0")
        X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)

    t0 = time.perf_counter()
    pca3 = pca_coords(X, 3)
    stage("pca", t0)
    if "pca" in methods:
        for d in dims:
            res[("pca", d)] = pca3[:, :d].astype(np.float32)

    nonlinear = [m for m in methods if m != "pca"]
    neighbour_methods = [m for m in nonlinear if m in METHODS]
    if not nonlinear:
        return res

    # ---- degenerate-input checks -------------------------------------------------
    fallback_reason = None
    if n < params.min_points:
        fallback_reason = f"only {n} points (< {params.min_points})"
    else:
        n_unique = np.unique(X, axis=0).shape[0]
        if n_unique < params.min_points:
            fallback_reason = f"only {n_unique} distinct points (< {params.min_points})"
        elif n_unique < n:
            warn(f"{n - n_unique} duplicate points (exact copies) in input")
    if fallback_reason is None and params.metric == "cosine":
        nz = int(np.sum(~np.any(X != 0, axis=1)))
        if nz:
            warn(f"{nz} zero vectors: cosine distance undefined, treated as distance 1 to all")
    if fallback_reason is not None:
        warn(f"t-SNE/UMAP replaced by PCA: {fallback_reason}")
        for m in nonlinear:
            for d in dims:
                res[(m, d)] = pca3[:, :d].astype(np.float32)
        return res

    # ---- shared exact kNN graph ----------------------------------------------------
    k_need = min(needed_k(params, neighbour_methods), n - 1)
    if knn is not None and (knn[0].shape[0] != n or knn[0].shape[1] < k_need):
        warn("precomputed knn unusable (wrong shape / too few neighbours); recomputing")
        knn = None
    t0 = time.perf_counter()
    if knn is None and neighbour_methods:
        knn = exact_knn(X, k_need, metric=params.metric, block=params.knn_block)
    knn_idx, knn_dist = knn if knn is not None else (None, None)
    res.knn = knn
    if neighbour_methods:
        stage("knn", t0)
    rng = np.random.default_rng(params.seed)
    pca_init = _jitter_if_degenerate(pca3, rng, 1e-4 * (np.abs(pca3).max() + 1.0))

    def finite_or_pca(name, Y, d):
        if Y is None or not np.all(np.isfinite(Y)):
            warn(f"{name} {d}D produced non-finite coordinates; PCA used instead")
            return pca3[:, :d].astype(np.float32)
        return Y.astype(np.float32)

    # ---- t-SNE ---------------------------------------------------------------------------
    if "tsne" in methods:
        from openTSNE.affinity import PerplexityBasedNN
        from openTSNE.nearest_neighbors import PrecomputedNeighbors

        t0 = time.perf_counter()
        perp = float(params.tsne_perplexity)
        k_t = min(int(3 * perp), knn_idx.shape[1])
        if 3 * perp > k_t:
            perp = max(k_t / 3.0, 1.0)
            warn(f"t-SNE perplexity lowered to {perp:.1f} ({n} points)")
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            aff = PerplexityBasedNN(
                knn_index=PrecomputedNeighbors(knn_idx[:, :k_t].astype(np.int64),
                                               knn_dist[:, :k_t].astype(np.float64)),
                perplexity=perp, n_jobs=params.n_jobs)
        stage("tsne_affinity", t0)
        y2 = None
        for d in sorted(dims):
            t0 = time.perf_counter()
            Y = None
            try:
                if d == 2:
                    init = _scaled_init(pca_init[:, :2], 1e-4, rng)
                    Y = _tsne(aff, init, params, params.tsne_early_iter, params.tsne_n_iter,
                              "fft", params.seed)
                    y2 = Y
                else:
                    if y2 is not None and params.tsne3d_from_2d:
                        # start from the converged 2-D layout, third axis = PCA 3 at a
                        # small spread so the 2-D structure is kept and refined in 3-D
                        s2 = y2.std(axis=0).mean()
                        z = pca_init[:, 2:3]
                        zs = z.std()
                        z = z / zs * (0.1 * s2) if zs > 0 else z
                        init = np.hstack([y2, z])
                        Y = _tsne(aff, init, params, params.tsne_3d_from2d_early_iter,
                                  params.tsne_3d_from2d_n_iter, "bh", params.seed)
                    else:
                        init = _scaled_init(pca_init[:, :3], 1e-4, rng)
                        Y = _tsne(aff, init, params, params.tsne_3d_early_iter,
                                  params.tsne_3d_n_iter, "bh", params.seed)
            except Exception as e:  # noqa: BLE001 - never crash a whole run on one head
                warn(f"t-SNE {d}D failed ({type(e).__name__}: {e})")
                Y = None
            res[("tsne", d)] = finite_or_pca("t-SNE", Y, d)
            stage(f"tsne{d}d", t0)

    # ---- UMAP ----------------------------------------------------------------------------
    if "umap" in methods:
        for d in sorted(dims):
            t0 = time.perf_counter()
            Y = None
            try:
                init = pca_init[:, :d]
                s = np.abs(init).max()
                init = init / s * 10.0 if s > 0 else init
                Y = _umap(X, knn_idx, knn_dist, init, d, params)
            except Exception as e:  # noqa: BLE001 - third-party algorithm edge (finite_or_pca below)
                warn(f"UMAP {d}D failed ({type(e).__name__}: {e})")
                Y = None
            res[("umap", d)] = finite_or_pca("UMAP", Y, d)
            stage(f"umap{d}d", t0)

    if attn:
        _attention_layouts(res, X, attn, dims, params, pca_init, rng, qk, input_index, causal, scale,
                           warn, stage, finite_or_pca)

    # keep the caller's requested key order: method-major
    ordered = ProjectionResult({(m, d): res[(m, d)] for m in methods for d in dims})
    ordered.warnings, ordered.timings, ordered.knn = res.warnings, res.timings, res.knn
    return ordered
