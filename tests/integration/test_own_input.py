"""Your own input in the global picture: the numbers.

- the new input's captured q/k give exactly the model's own attention (minilm, smollm2, dinov2);
- the joint space uses the STORED corpus statistics and reproduces precompute.joint for every variant;
- PCA placement is exact: projecting the stored points reproduces the stored coordinates (1e-4) and a
  new point gets (x − mean)·V of the corpus PCA;
- kNN placement: a stored point lands on itself, the weights are 1/distance;
- openTSNE transform / umap refit + transform: the refit reproduces precompute.projections exactly
  and new points from a cluster land in that cluster;
- uploads: PNG/JPEG accepted, everything else a one-line InputError;
- every head of a store gets 2 × n_tokens new points.
"""
from __future__ import annotations

import base64
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from analysis import own_input as oi  # noqa: E402
from precompute.joint import VARIANTS, joint_embedding  # noqa: E402
from precompute.metrics import attention_from_qk  # noqa: E402
from precompute.projections import ProjectionParams, pca_coords, project  # noqa: E402
from tests.integration.helpers import adapter  # noqa: E402  (one model per process, shared)


def clusters(n_per=70, d=12, seed=0, centres=3):
    rng = np.random.default_rng(seed)
    c = rng.normal(scale=6.0, size=(centres, d))
    x = np.concatenate([c[i] + rng.normal(size=(n_per, d)) for i in range(centres)])
    return x.astype(np.float32), np.repeat(np.arange(centres), n_per), c


# ----------------------------------------------------------------------------- capture
@pytest.mark.parametrize("name", ["minilm", "smollm2", "dinov2-small"])
def test_own_input_qk_reproduce_model_attention(name):
    a = adapter(name)
    layers = [0, a.info.n_layers - 1]
    if a.info.modality == "image":
        from PIL import Image
        yy, xx = np.mgrid[0:300, 0:260]
        img = Image.fromarray(np.stack([xx % 256, yy % 256, (xx * yy) % 256], -1).astype(np.uint8))
        own = oi.capture_own_input(a, layers, image=img)
        batch = a.encode_images([img])
        assert own.image is not None and own.image.shape[:2] == (a.image_size, a.image_size)
        assert own.grid and own.n == own.grid[0] * own.grid[1] + own.n_prefix
    else:
        own = oi.capture_own_input(a, layers, text="A new sentence the corpus never saw, with a twist.")
        batch = a.encode_texts(["A new sentence the corpus never saw, with a twist."])
        assert own.tokens == batch[0].tokens and own.truncated == 0
    att = a.attentions(batch)
    for layer in layers:
        q, k = own.queries[layer], own.keys[layer]
        assert q.shape == k.shape == (a.info.n_heads, own.n, a.info.head_dim) and q.dtype == np.float32
        for h in range(a.info.n_heads):
            diff = np.abs(attention_from_qk(q[h], k[h], a.info.causal, a.info.scale) - att[layer][0][h]).max()
            assert diff < 1e-4, f"{name} L{layer} H{h}: |Δ| = {diff:.2e}"
    # round trip through the disk-cache form
    back = oi.OwnInput.from_dict(own.to_dict())
    np.testing.assert_array_equal(back.queries[layers[-1]], own.queries[layers[-1]])


def test_long_text_is_truncated_and_reported():
    a = adapter("minilm")
    own = oi.capture_own_input(a, [0], text=" ".join(["word"] * (a.info.max_length + 50)))
    assert own.n == a.info.max_length and own.truncated >= 50
    with pytest.raises(oi.InputError):
        oi.capture_own_input(a, [0], text="   ")


# ----------------------------------------------------------------------------- joint space
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_joint_stats_reproduce_the_stored_joint_space(variant):
    rng = np.random.default_rng(2)
    q = rng.normal(1.0, 2.0, size=(80, 8)).astype(np.float32)
    k = rng.normal(-3.0, 0.5, size=(80, 8)).astype(np.float32)
    st = oi.joint_stats(q, k, variant)
    np.testing.assert_allclose(st.place(q, k), joint_embedding(q, k, *VARIANTS[variant]), atol=1e-5)
    # a new input uses the CORPUS statistics, not its own
    qn, kn = q[:5] * 2 + 1, k[:5] - 4
    placed = st.place(qn, kn).astype(np.float64)
    translate, scale = VARIANTS[variant]
    c = st.c
    t = (q / c).mean(0, dtype=np.float64) - (k * c).mean(0, dtype=np.float64) if translate else 0.0
    np.testing.assert_allclose(placed[:5], qn / c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(placed[5:], kn * c + t, rtol=1e-5, atol=1e-5)
    if translate or scale:  # the raw variant has no statistics to differ in
        assert not np.allclose(placed, joint_embedding(qn, kn, translate, scale), atol=1e-3)


# ----------------------------------------------------------------------------- PCA exact
def test_pca_placement_is_exact():
    x, _, _ = clusters()
    q, k = x[:105], x[105:] * 0.5 + 1.0
    X = joint_embedding(q, k, True, False)
    stored = project(X, methods=("pca",), dims=(2,))[("pca", 2)]
    # the stored points through the recovered map: their stored coordinates
    p = oi.place_in_head(q, k, stored, q, k, "translated", "pca")
    assert p.exact and p.error < 1e-6
    np.testing.assert_allclose(p.coords, stored, atol=1e-4)
    # a new point: (x − corpus mean) · V of the corpus PCA
    rng = np.random.default_rng(5)
    qn, kn = rng.normal(size=(4, 12)).astype(np.float32), rng.normal(size=(4, 12)).astype(np.float32)
    Xn = oi.joint_stats(q, k, "translated").place(qn, kn).astype(np.float64)
    Xc = X.astype(np.float64)
    ref = pca_coords(np.vstack([Xc, Xn]), 2)  # not this: PCA must NOT be refitted with the new points
    evals, evecs = np.linalg.eigh((Xc - Xc.mean(0)).T @ (Xc - Xc.mean(0)))
    V = evecs[:, np.argsort(evals)[::-1][:2]]
    V *= np.sign(V[np.argmax(np.abs(V), 0), [0, 1]])
    expected = (Xn - Xc.mean(0)) @ V
    new = oi.place_in_head(q, k, stored, qn, kn, "translated", "pca").coords
    np.testing.assert_allclose(new, expected, atol=1e-4)
    assert np.abs(new - ref[len(Xc):]).max() > 1e-3


def test_non_linear_stored_coords_fall_back_to_knn():
    x, _, _ = clusters()
    q, k = x[:105], x[105:]
    stored = np.tanh(joint_embedding(q, k, True, False)[:, :2] / 5)   # not a linear map
    p = oi.place_in_head(q, k, stored, q[:3], k[:3], "translated", "pca")
    assert not p.exact and "approximate" in p.how and p.error > 1e-4


@pytest.mark.parametrize("method", ["attn-umap", "attn-tsne"])
def test_attention_graph_layouts_place_same_role_and_refuse_a_transform(method):
    x, _, _ = clusters()
    q, k = x[:105], x[105:]
    stored = np.random.default_rng(0).normal(size=(210, 2))
    p = oi.place_in_head(q, k, stored, q[:3], k[:4], "translated", method, "euclidean", k=1)
    # each new query lands on its nearest stored QUERY, each new key on its nearest stored KEY
    np.testing.assert_allclose(p.coords[:3], stored[:3], atol=1e-6)
    np.testing.assert_allclose(p.coords[3:], stored[105:109], atol=1e-6)
    assert not p.exact and p.how.startswith("attention-graph") and "same-role" in p.how
    with pytest.raises(ValueError) as exc:
        oi.transform_in_head(q, k, stored, q[:3], k[:3], "translated", method, ProjectionParams(), [method])
    msg = str(exc.value)
    assert "\n" not in msg and "has no transform" in msg and "its own input" in msg


# ----------------------------------------------------------------------------- kNN placement
def test_knn_place_weights():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    Y = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    # a stored point lands on its own stored coordinates
    np.testing.assert_allclose(oi.knn_place(X, Y, X[1:2], k=2, metric="euclidean"), Y[1:2], atol=1e-6)
    # halfway between points 0 and 1 (distance √0.5 to each), point 2 farther: weights 1/d
    p = np.array([[0.5, 0.5]])
    d = np.linalg.norm(X - p, axis=1)
    w = 1 / d
    expected = (w[:, None] * Y).sum(0) / w.sum()
    np.testing.assert_allclose(oi.knn_place(X, Y, p, k=3, metric="euclidean")[0], expected, atol=1e-6)
    idx, dist = oi.nearest(p, X, 2, "cosine")
    assert sorted(idx[0].tolist()) == [0, 1] and np.allclose(dist, 1 - np.cos(np.pi / 4))


# ----------------------------------------------------------------------------- real transforms
def _in_cluster(Y, labels, Ynew, c):
    cent = np.stack([Y[labels == i].mean(0) for i in range(labels.max() + 1)])
    return np.argmin(np.linalg.norm(Ynew[:, None] - cent[None], axis=2), 1) == c


def test_tsne_transform_places_new_points_in_their_cluster():
    x, labels, centres = clusters(n_per=60, seed=1)
    params = ProjectionParams(tsne_perplexity=10, tsne_early_iter=50, tsne_n_iter=100)
    Y = project(x, methods=("tsne",), dims=(2,), params=params)[("tsne", 2)]
    rng = np.random.default_rng(9)
    new = (centres[2] + rng.normal(size=(6, x.shape[1]))).astype(np.float32)
    Yn = oi.tsne_transform(x, Y.astype(np.float64), new, params)
    assert Yn.shape == (6, 2) and np.isfinite(Yn).all()
    assert _in_cluster(Y, labels, Yn, 2).all()


# numba compiles umap's transform: ~10 s idle, ~40 s on a loaded 2-core machine (under a minute: not `slow`)
def test_umap_refit_reproduces_the_pipeline_and_transforms():
    x, labels, centres = clusters(n_per=60, seed=4)
    params = ProjectionParams(umap_n_epochs=30, tsne_perplexity=10)
    run_methods = ("pca", "tsne", "umap")
    stored = project(x, methods=run_methods, dims=(2,), params=params)[("umap", 2)]
    reducer = oi.umap_refit(x, 2, params, run_methods)
    assert np.abs(np.asarray(reducer.embedding_) - stored).max() == 0.0   # the very same fitted model
    rng = np.random.default_rng(2)
    new = (centres[1] + rng.normal(size=(5, x.shape[1]))).astype(np.float32)
    Yn, diff = oi.umap_transform(x, stored.astype(np.float64), new, params, run_methods)
    assert diff == 0.0 and Yn.shape == (5, 2)
    assert _in_cluster(stored, labels, Yn, 1).all()


# ----------------------------------------------------------------------------- uploads
def _data_url(raw: bytes, mime="image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def _png(size=(40, 30), fmt="PNG") -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def test_decode_image_accepts_png_and_jpeg():
    img = oi.decode_image(_data_url(_png()), "a.png")
    assert img.mode == "RGB" and img.size == (40, 30)
    assert oi.decode_image(_data_url(_png(fmt="JPEG"), "image/jpeg")).size == (40, 30)


@pytest.mark.parametrize("contents,needle", [
    (None, "upload"),
    ("not a data url", "data URL"),
    ("data:image/png;base64,@@@@", "base64"),
    (_data_url(b"hello, I am text"), "not a readable"),
    (_data_url(_png()[:60]), "not a readable"),
    (_data_url(_png(fmt="GIF"), "image/gif"), "GIF"),
    (_data_url(b"\0" * (oi.MAX_UPLOAD_BYTES + 10)), "larger than 5 MB"),
])
def test_decode_image_rejects_bad_uploads(contents, needle):
    with pytest.raises(oi.InputError) as e:
        oi.decode_image(contents, "x.bin")
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


# ----------------------------------------------------------------------------- every head
def test_place_all_heads_on_a_store():
    from precompute.store import Store
    from tests.store_fixture import make_test_store

    d = Path(tempfile.mkdtemp(prefix="atlas-own-"))
    run = make_test_store(d, "text", n_layers=2, n_heads=3, n_inputs=8, missing_heads=[(1, 2)])
    store = Store(d, readonly=True)
    m = store.manifest(run)
    n_tok = len(store.tokens(run)["text"])
    rng = np.random.default_rng(0)
    own = oi.OwnInput(tokens=["a", "b", "c", "d"], token_ids=[1, 2, 3, 4], truncated=0, layers=[0, 1],
                      queries={l: rng.normal(size=(3, 4, 16)).astype(np.float32) for l in (0, 1)},
                      keys={l: rng.normal(size=(3, 4, 16)).astype(np.float32) for l in (0, 1)})
    for method in ("pca", "umap"):
        g = oi.place_all_heads(lambda l, h: store.qk(run, l, h),
                               lambda l, h: store.coords(run, l, h, "translated", method, 2),
                               own, m["layers"], m["heads"], "translated", method, n_tok, sample_points=60)
        assert g.missing == [(1, 2)] and len(g.new) == 5
        assert all(v.shape == (8, 2) for v in g.new.values())
        assert all(v.shape == (60, 2) for v in g.ref.values())
        assert all(g.exact.values()) == (method == "pca")
    # the stored points placed by the same function land on their stored coordinates (PCA)
    q, k = store.qk(run, 0, 1)
    coords = store.coords(run, 0, 1, "translated", "pca", 2)
    p = oi.place_in_head(q, k, coords, q[:7], k[:7], "translated", "pca")
    np.testing.assert_allclose(p.coords[:7], coords[:7], atol=1e-4)
    np.testing.assert_allclose(p.coords[7:], coords[len(q):len(q) + 7], atol=1e-4)
