"""Your own input in the global picture: a new text (or image) runs through the run's model and
its queries and keys are placed into the STORED projections of every head. Nothing is recomputed
for the corpus.

Steps and how exact each one is:

1. **Capture** (exact): the run's model (``analysis.live.run_model``) encodes the input and
   ``adapter.capture`` returns per layer its queries and keys exactly as the attention multiplies
   them (the same code path that made the stored q/k). Text longer than the model's
   ``max_length`` is truncated (reported).
2. **Joint space** (exact): the new q/k get the head's STORED corpus statistics, never their own:
   norm scaling q/c, k·c with the corpus c, then key translation k + (mean Q − mean K) of the
   (scaled) corpus — the same order as :func:`precompute.joint.transform_qk`.
3. **Projection**:

   * PCA — exact. The stored PCA coordinates are an affine function of the joint points; the map
     is recovered from the stored data by least squares and checked: projecting the stored points
     with it must reproduce the stored coordinates (max error ≤ 1e-4 of their spread), else the
     head falls back to 4.
   * t-SNE / UMAP in the all-heads grid — approximate: a new point is placed at the weighted mean
     (weights 1/distance) of the stored coordinates of its ``k`` nearest stored points in the joint
     space (same metric as the run's kNN graph); this is the initialisation openTSNE's and UMAP's
     own ``transform`` start from.
   * t-SNE for the current head — openTSNE's ``TSNEEmbedding.transform`` against the stored
     layout (the stored layout *is* the fitted embedding; transform only needs it and the stored
     high-dimensional points, searched exactly).
   * UMAP for the current head — the head is refitted exactly as the pipeline did (same kNN graph,
     same PCA initialisation, same seed); when the refit reproduces the stored coordinates (checked)
     this is the fitted model and umap's ``transform`` places the new points. Otherwise the refit
     model's layout is replaced by the stored one before transforming (said in the note).
   * attention-graph layouts (attn-umap / attn-tsne) — approximate everywhere: a new query at the
     weighted mean of its ``k`` nearest stored QUERIES, a new key among the stored KEYS (the
     layout's same-role neighbours). Their graph also links each point to the points of its own
     input it attends to; a new input was not part of that graph, so there is no real transform
     (asking for one says so in one line).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings as _warnings
from dataclasses import dataclass, field

import numpy as np

from attention_atlas.core import runtime
from precompute.faithfulness import method_label
from precompute.joint import VARIANTS, key_translation, norm_scale_factor

MAX_UPLOAD_BYTES = 5 * 2**20
MAX_TEXT_CHARS = 20000
MAX_IMAGE_PIXELS = 40_000_000
KNN_K = 10
EXACT_TOL = 1e-4


class InputError(ValueError):
    """A user input that cannot be used; the message is one line that names the fix."""


# ----------------------------------------------------------------------------- inputs
def check_text(text) -> str:
    text = (text or "").strip()
    if not text:
        raise InputError("type a sentence first")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"the text has {len(text)} characters; at most {MAX_TEXT_CHARS} are accepted")
    return text


def decode_image(contents: str | None, filename: str | None = None):
    """A ``dcc.Upload`` data URL → RGB PIL image. PNG/JPEG only, ≤ 5 MB, decoded safely."""
    from PIL import Image, UnidentifiedImageError

    if not contents:
        raise InputError("upload a PNG or JPEG image first")
    head, _, b64 = str(contents).partition(",")
    if not head.startswith("data:") or ";base64" not in head:
        raise InputError("the upload could not be read (not a data URL): upload a PNG or JPEG file")
    if len(b64) * 3 // 4 > MAX_UPLOAD_BYTES + 3:
        raise InputError(f"the image is larger than {MAX_UPLOAD_BYTES // 2**20} MB: upload a smaller PNG or JPEG")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("the upload is not valid base64 data: upload a PNG or JPEG file") from None
    if len(raw) > MAX_UPLOAD_BYTES:
        raise InputError(f"the image is larger than {MAX_UPLOAD_BYTES // 2**20} MB: upload a smaller PNG or JPEG")
    name = f" {filename!r}" if filename else ""
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as probe:
                fmt = probe.format
                if fmt not in ("PNG", "JPEG"):
                    raise InputError(f"the file{name} is a {fmt or 'unknown'} image; upload a PNG or JPEG")
                w, h = probe.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise InputError(f"the image{name} has {w}×{h} pixels; at most {MAX_IMAGE_PIXELS:,} are accepted")
                probe.verify()
            with Image.open(io.BytesIO(raw)) as img:
                img.load()
                return img.convert("RGB")
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        raise InputError(f"the file{name} is not a readable PNG or JPEG image") from None


def input_key(run_id: str, identity: str, payload: bytes | str) -> str:
    """Content key of one own input for one run (the disk cache key of its capture)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    h = hashlib.sha1()
    for part in (run_id.encode(), b"\0", (identity or "").encode(), b"\0", payload):
        h.update(part)
    return h.hexdigest()[:20]


@dataclass
class OwnInput:
    """A captured own input: tokens and per-layer q/k (n_heads, n, head_dim) float32."""
    tokens: list[str]
    token_ids: list[int]
    truncated: int
    layers: list[int]
    queries: dict[int, np.ndarray]
    keys: dict[int, np.ndarray]
    image: np.ndarray | None = None          # uint8 H×W×3 as the model saw it (images)
    grid: tuple[int, int] | None = None
    n_prefix: int = 0
    label: str = ""

    @property
    def n(self) -> int:
        return len(self.tokens)

    def qk(self, layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
        return self.queries[layer][head], self.keys[layer][head]

    # plain dict of arrays / lists: pickles small and fast to the disk cache
    def to_dict(self) -> dict:
        return {"tokens": list(self.tokens), "token_ids": [int(t) for t in self.token_ids],
                "truncated": int(self.truncated), "layers": [int(l) for l in self.layers],
                "queries": {int(l): np.asarray(v, np.float32) for l, v in self.queries.items()},
                "keys": {int(l): np.asarray(v, np.float32) for l, v in self.keys.items()},
                "image": self.image, "grid": tuple(self.grid) if self.grid else None,
                "n_prefix": int(self.n_prefix), "label": self.label}

    @classmethod
    def from_dict(cls, d: dict) -> "OwnInput":
        return cls(**d)


def capture_own_input(adapter, layers: list[int], text: str | None = None, image=None,
                      label: str = "") -> OwnInput:
    """Encode and capture one input with the run's model adapter for the run's layers."""
    if image is not None:
        enc = adapter.encode_images([image])[0]
    else:
        enc = adapter.encode_texts([check_text(text)])[0]
    with runtime.model_lock(adapter):  # one forward pass at a time through a shared model
        cap = adapter.capture([enc], layers=list(layers))
    return OwnInput(tokens=list(enc.tokens), token_ids=list(enc.token_ids), truncated=int(enc.truncated),
                    layers=[int(l) for l in layers],
                    queries={int(l): cap[l][0][0] for l in layers}, keys={int(l): cap[l][1][0] for l in layers},
                    image=None if enc.display_image is None else np.asarray(enc.display_image, np.uint8),
                    grid=tuple(enc.patch_grid) if enc.patch_grid else None, n_prefix=int(enc.n_prefix),
                    label=label or (text or "")[:200])


# ----------------------------------------------------------------------------- joint space
@dataclass
class JointStats:
    """The corpus statistics of one head and variant: q → q/c, k → k·c + t."""
    c: float = 1.0
    t: np.ndarray | None = None

    def place(self, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        """(2n, d) float32: the new queries then the new keys in the head's joint space."""
        qq = np.asarray(q, np.float64) / self.c
        kk = np.asarray(k, np.float64) * self.c
        if self.t is not None:
            kk = kk + self.t
        return np.concatenate([qq, kk]).astype(np.float32)


def joint_stats(q: np.ndarray, k: np.ndarray, variant: str) -> JointStats:
    """Statistics of the stored corpus q/k for ``variant`` (same order as transform_qk:
    scale first, then translate with the means of the scaled clouds)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    translate, scale = VARIANTS[variant]
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    c = norm_scale_factor(q, k) if scale else 1.0
    t = key_translation(q / c, k * c) if translate else None
    return JointStats(c=float(c), t=t)


# ----------------------------------------------------------------------------- projections
def linear_map(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, float]:
    """Affine map M ((d+1) × dim) with [X 1]·M ≈ Y by least squares, and the max error of
    reproducing Y relative to Y's spread."""
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    A = np.hstack([X, np.ones((len(X), 1))])
    M, *_ = np.linalg.lstsq(A, Y, rcond=None)
    spread = float(np.abs(Y - Y.mean(0)).max()) if len(Y) else 0.0
    err = float(np.abs(A @ M - Y).max()) / max(spread, 1e-12) if len(Y) else 0.0
    return M, err


def apply_linear(M: np.ndarray, X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float64)
    return np.hstack([X, np.ones((len(X), 1))]) @ M


def distances(X_new: np.ndarray, X_ref: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """(m, n) distances from new points to reference points (cosine: 1 − cos, zero vectors at 1)."""
    A = np.asarray(X_new, np.float64)
    B = np.asarray(X_ref, np.float64)
    if metric == "cosine":
        an = np.linalg.norm(A, axis=1, keepdims=True)
        bn = np.linalg.norm(B, axis=1, keepdims=True)
        A = A / np.where(an > 0, an, 1.0)
        B = B / np.where(bn > 0, bn, 1.0)
        D = 1.0 - A @ B.T
        D[(an[:, 0] == 0)[:, None] | (bn[:, 0] == 0)[None, :]] = 1.0
        return np.maximum(D, 0.0)
    sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    return np.sqrt(np.maximum(sq, 0.0))


def nearest(X_new: np.ndarray, X_ref: np.ndarray, k: int, metric: str = "cosine"
            ) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest reference points of each new point: (indices, distances), nearest first."""
    D = distances(X_new, X_ref, metric)
    k = int(min(k, D.shape[1]))
    if k <= 0:
        return np.zeros((len(D), 0), int), np.zeros((len(D), 0))
    idx = np.argpartition(D, k - 1, axis=1)[:, :k] if k < D.shape[1] else np.tile(np.arange(D.shape[1]), (len(D), 1))
    d = np.take_along_axis(D, idx, 1)
    order = np.lexsort((idx, d), axis=1)  # by distance, ties by index
    idx = np.take_along_axis(idx, order, 1)
    return idx, np.take_along_axis(D, idx, 1)


def knn_place(X_ref: np.ndarray, Y_ref: np.ndarray, X_new: np.ndarray, k: int = KNN_K,
              metric: str = "cosine") -> np.ndarray:
    """Approximate placement: weighted mean (weights 1/distance) of the stored coordinates of
    the k nearest stored points. A new point equal to a stored point lands on it."""
    idx, d = nearest(X_new, X_ref, k, metric)
    w = 1.0 / (d + 1e-9)
    w /= w.sum(1, keepdims=True)
    return np.einsum("mk,mkd->md", w, np.asarray(Y_ref, np.float64)[idx])


@dataclass
class Placement:
    coords: np.ndarray                  # (2n, dim): new queries then new keys
    exact: bool
    how: str                            # one line for the UI
    error: float | None = None          # PCA: relative error reproducing the stored coords


def place_in_head(q_ref: np.ndarray, k_ref: np.ndarray, coords_ref: np.ndarray, q_new: np.ndarray,
                  k_new: np.ndarray, variant: str, method: str, metric: str = "cosine",
                  k: int = KNN_K) -> Placement:
    """The new input's queries and keys in one head's stored projection (see the module doc)."""
    stats = joint_stats(q_ref, k_ref, variant)
    X_ref = stats.place(q_ref, k_ref)
    X_new = stats.place(q_new, k_new)
    Y_ref = np.asarray(coords_ref, np.float64)
    if method == "pca":
        M, err = linear_map(X_ref, Y_ref)
        if err <= EXACT_TOL:
            return Placement(apply_linear(M, X_new), True, "PCA: exact (the stored linear map)", err)
        return Placement(knn_place(X_ref, Y_ref, X_new, k, metric), False,
                         f"PCA: approximate (the stored coordinates are not a linear map of the joint space, "
                         f"error {err:.1e}); placed at the weighted mean of the {k} nearest stored points", err)
    name = method_label(method)
    if method in ATTN_LAYOUTS:
        # the layout's graph links a point to its same-role neighbours and to the points of ITS OWN
        # input it attends to (or is attended by); only the former exist for a new input
        n, m = len(q_ref), len(q_new)
        Y = np.vstack([knn_place(X_ref[:n], Y_ref[:n], X_new[:m], k, metric),
                       knn_place(X_ref[n:], Y_ref[n:], X_new[m:], k, metric)])
        return Placement(Y, False, f"{name}: approximate (each of your queries placed at the weighted mean of its {k} "
                                   f"nearest stored queries, each key among the stored keys: the layout's same-role "
                                   f"neighbours; {ATTN_NOTE})")
    return Placement(knn_place(X_ref, Y_ref, X_new, k, metric), False,
                     f"{name}: approximate (placed at the weighted mean of its {k} nearest stored neighbours)")


ATTN_LAYOUTS = ("attn-umap", "attn-tsne")  # = precompute.projections.ATTN_METHODS
ATTN_NOTE = ("the attention edges inside your input, which the layout's graph would add, are not part of the "
             "stored graph")


def attn_transform_refusal(method: str) -> str:
    """Why the attention-graph layouts have no real transform (one line)."""
    return (f"{method_label(method)} has no transform for new points: its graph links each point to the points of "
            f"its own input it attends to, and your input's points were not in the stored graph; the approximate "
            f"placement (≈) is shown")


# ----------------------------------------------------------------------------- real transforms
def _exact_index(data, metric, indices, dists):
    """openTSNE KNNIndex over the stored points with an exact query for new points."""
    from openTSNE.nearest_neighbors import KNNIndex

    class ExactIndex(KNNIndex):
        def __init__(self):  # noqa: D401 - no build step: the stored graph is given
            self.data, self.metric = np.asarray(data, np.float32), metric
            self.indices, self.distances = indices, dists
            self.n_samples, self.k = len(data), indices.shape[1]

        def build(self):
            return self.indices, self.distances

        def query(self, query, k):
            return nearest(query, self.data, k, self.metric)
    return ExactIndex()


def tsne_transform(X_ref: np.ndarray, Y_ref: np.ndarray, X_new: np.ndarray, params) -> np.ndarray:
    """openTSNE's transform of new points into the stored t-SNE layout (reference kept fixed)."""
    from openTSNE import TSNEEmbedding
    from openTSNE.affinity import PerplexityBasedNN

    from precompute.knn import exact_knn

    perp = float(min(params.tsne_perplexity, max((len(X_ref) - 1) / 3.0, 1.0)))
    k_t = int(min(3 * perp, len(X_ref) - 1))
    idx, dist = exact_knn(X_ref, k_t, metric=params.metric, block=params.knn_block)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        aff = PerplexityBasedNN(knn_index=_exact_index(X_ref, params.metric, idx.astype(np.int64),
                                                       dist.astype(np.float64)), perplexity=perp, n_jobs=1)
        dim = Y_ref.shape[1]
        emb = TSNEEmbedding(np.asarray(Y_ref, np.float64), aff, negative_gradient_method="fft" if dim == 2 else "bh",
                            random_state=params.seed, n_jobs=1, verbose=False,
                            ints_in_interval=params.tsne_ints_in_interval,
                            min_num_intervals=params.tsne_min_num_intervals)
        out = emb.transform(np.asarray(X_new, np.float64), perplexity=min(5.0, perp),
                            k=int(min(25, len(X_ref))))
    return np.asarray(out, np.float64)


def umap_refit(X_ref: np.ndarray, dim: int, params, run_methods) -> "object":
    """umap.UMAP fitted exactly as precompute.projections does for a head (same kNN graph —
    sized for all of the run's nonlinear methods —, PCA initialisation and seed)."""
    import umap

    from precompute.knn import exact_knn
    from precompute.projections import _jitter_if_degenerate, needed_k, pca_coords

    X = np.asarray(X_ref, np.float32)
    n = len(X)
    nonlinear = [m for m in run_methods if m != "pca"] or ["umap"]
    k_need = min(needed_k(params, nonlinear), n - 1)
    knn_idx, knn_dist = exact_knn(X, k_need, metric=params.metric, block=params.knn_block)
    pca3 = pca_coords(X, 3)
    rng = np.random.default_rng(params.seed)
    pca_init = _jitter_if_degenerate(pca3, rng, 1e-4 * (np.abs(pca3).max() + 1.0))
    init = pca_init[:, :dim]
    s = np.abs(init).max()
    init = init / s * 10.0 if s > 0 else init
    nn = int(min(params.umap_n_neighbors, n))
    kidx = np.empty((n, nn), np.int32)
    kdist = np.empty((n, nn), np.float32)
    kidx[:, 0], kdist[:, 0] = np.arange(n), 0.0
    kidx[:, 1:], kdist[:, 1:] = knn_idx[:, :nn - 1], knn_dist[:, :nn - 1]
    reducer = umap.UMAP(n_components=dim, n_neighbors=nn, min_dist=params.umap_min_dist, metric=params.metric,
                        random_state=params.seed, init=init.astype(np.float32), n_epochs=params.umap_n_epochs,
                        precomputed_knn=(kidx, kdist, None), n_jobs=1, verbose=False, low_memory=True)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        reducer.fit(X)
    return reducer


def umap_transform(X_ref: np.ndarray, Y_ref: np.ndarray, X_new: np.ndarray, params, run_methods
                   ) -> tuple[np.ndarray, float]:
    """(new coords, max |refit − stored|) — see the module doc."""
    reducer = umap_refit(X_ref, Y_ref.shape[1], params, run_methods)
    diff = float(np.abs(np.asarray(reducer.embedding_, np.float64) - Y_ref).max())
    if diff > 1e-4:
        reducer.embedding_ = np.asarray(Y_ref, np.float32)
    # the pipeline's kNN graph was precomputed, so umap kept no search index: search the stored
    # points exactly instead (umap's own small-data path, pairwise distances)
    reducer._small_data = True
    if hasattr(reducer, "_knn_search_index"):
        del reducer._knn_search_index
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        out = reducer.transform(np.asarray(X_new, np.float32))
    return np.asarray(out, np.float64), diff


def transform_in_head(q_ref, k_ref, coords_ref, q_new, k_new, variant: str, method: str, params,
                      run_methods) -> Placement:
    """The real transform for one head (t-SNE/UMAP), PCA exact; see the module doc."""
    if method == "pca":
        return place_in_head(q_ref, k_ref, coords_ref, q_new, k_new, variant, method, params.metric)
    stats = joint_stats(q_ref, k_ref, variant)
    X_ref = stats.place(q_ref, k_ref)
    X_new = stats.place(q_new, k_new)
    Y_ref = np.asarray(coords_ref, np.float64)
    if method in ATTN_LAYOUTS:
        raise ValueError(attn_transform_refusal(method))
    if method == "tsne":
        return Placement(tsne_transform(X_ref, Y_ref, X_new, params), True,
                         "t-SNE: openTSNE transform (new points optimised against the fixed stored layout)")
    if method == "umap":
        Y, diff = umap_transform(X_ref, Y_ref, X_new, params, run_methods)
        if diff <= 1e-4:
            how = "UMAP: umap's transform of the refitted model (refit reproduces the stored layout exactly)"
        else:
            how = (f"UMAP: umap's transform against the stored layout (the refit differs from it by up to "
                   f"{diff:.2g}, so the result is approximate)")
        return Placement(Y, diff <= 1e-4, how, diff)
    raise ValueError(f"unknown projection {method!r}")


# ----------------------------------------------------------------------------- all heads
@dataclass
class GridPlacement:
    """Per (layer, head): the down-sampled stored coords (grey) and the new input's coords."""
    sample: np.ndarray                                  # token rows shown in grey (same in every head)
    ref: dict = field(default_factory=dict)             # (l, h) → (2·len(sample), 2) float32
    new: dict = field(default_factory=dict)             # (l, h) → (2n, 2) float32
    exact: dict = field(default_factory=dict)           # (l, h) → bool
    how: dict = field(default_factory=dict)             # (l, h) → str
    missing: list = field(default_factory=list)         # heads without stored q/k or coords


def place_all_heads(read_qk, read_coords, own: OwnInput, layers, heads, variant: str, method: str,
                    n_tokens: int, metric: str = "cosine", sample_points: int = 600, seed: int = 0,
                    progress=None) -> GridPlacement:
    """Place ``own`` in every head's stored 2-D projection. ``read_qk(l, h)`` → (q, k) or None;
    ``read_coords(l, h)`` → (2N, 2) or None."""
    from attention_atlas.core.tokens import sample_tokens

    sample = sample_tokens(n_tokens, sample_points, seed)
    rows = np.r_[sample, n_tokens + sample]
    out = GridPlacement(sample=sample)
    total = len(layers) * len(heads)
    done = 0
    for layer in layers:
        for head in heads:
            done += 1
            qk = read_qk(layer, head)
            coords = read_coords(layer, head)
            if qk is None or coords is None or layer not in own.queries:
                out.missing.append((layer, head))
                continue
            q_new, k_new = own.qk(layer, head)
            p = place_in_head(qk[0], qk[1], coords[:, :2], q_new, k_new, variant, method, metric)
            out.ref[(layer, head)] = np.asarray(coords[rows, :2], np.float32)
            out.new[(layer, head)] = p.coords[:, :2].astype(np.float32)
            out.exact[(layer, head)] = p.exact
            out.how[(layer, head)] = p.how
            if progress is not None:
                progress(done, total)
    return out
