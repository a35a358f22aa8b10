"""Unit tests of the dashboard's pure functions (figures/)."""
from __future__ import annotations

import numpy as np
import pytest

from figures.attention import aggregate_by_position, attention, downsample, hide_and_renormalise, top_keys
from figures.colors import MOD5_KEYS, MOD5_QUERIES, color_spec
from figures.common import InputIndex, context_string, normalise_token, typed
from figures.matrix import build_matrix_data, overlay_points
from figures.search import normalised_texts, search_tokens
from figures.tiling import PAD, cell_size, fit_into_cell, head_of_point, sample_tokens, tile_heads
from figures.urlstate import DEFAULTS, parse, serialise


def _tokens(texts, input_ids, positions):
    texts = np.array(texts)
    input_ids = np.array(input_ids, np.int32)
    positions = np.array(positions, np.int32)
    lengths = np.array([np.sum(input_ids == i) for i in input_ids], np.int32)
    return {"text": texts, "input_id": input_ids, "position": positions, "input_length": lengths,
            "norm_position": (positions / np.maximum(lengths - 1, 1)).astype(np.float32),
            "patch_row": np.full(len(texts), -1, np.int16), "patch_col": np.full(len(texts), -1, np.int16),
            "patch_rgb": np.zeros((len(texts), 3), np.uint8), "token_id": np.arange(len(texts), dtype=np.int32)}


# ---------------------------------------------------------------- tiling
def test_tiling_puts_each_head_inside_its_cell():
    rng = np.random.default_rng(0)
    n_rows, n_cols = 30, 9
    cell = cell_size(n_rows, n_cols)
    assert n_rows * cell <= 65535 and n_cols * cell <= 65535
    cells = [(r, c) for r in range(n_rows) for c in range(n_cols)]
    coords = [rng.normal(size=(200, 2)) * rng.uniform(0.01, 100) + rng.normal(size=2) * 50 for _ in cells]
    coords[5] = None  # a missing head leaves its cell empty
    x, y, offsets = tile_heads(coords, cells, n_rows, cell)
    assert x.dtype == np.uint16 and y.dtype == np.uint16
    assert len(offsets) == len(cells) + 1 and offsets[-1] == len(x) == 200 * (len(cells) - 1)
    for i, (r, c) in enumerate(cells):
        xs, ys = x[offsets[i]:offsets[i + 1]], y[offsets[i]:offsets[i + 1]]
        if coords[i] is None:
            assert len(xs) == 0
            continue
        assert xs.min() >= c * cell + PAD * cell - 1 and xs.max() <= (c + 1) * cell - PAD * cell + 1
        top = n_rows - 1 - r
        assert ys.min() >= top * cell + PAD * cell - 1 and ys.max() <= (top + 1) * cell - PAD * cell + 1
        if len(xs):
            assert head_of_point(offsets[i], offsets) == i or offsets[i] == offsets[i + 1]


def test_fit_into_cell_keeps_aspect_and_handles_degenerate_input():
    x, y = fit_into_cell(np.array([[0, 0], [2, 1]]), 0, 0, 1, 1000)
    assert (x[1] - x[0]) == pytest.approx(2 * (y[1] - y[0]), abs=2)
    x, y = fit_into_cell(np.zeros((5, 2)), 0, 0, 1, 1000)  # all points equal: no division by zero
    assert (x == 500).all() and (y == 500).all()
    x, y = fit_into_cell(np.array([[np.nan, 1.0], [0.0, 0.0], [1.0, 1.0]]), 0, 0, 1, 1000)
    assert len(x) == 3


def test_sample_tokens_is_seeded_and_shared():
    a, b = sample_tokens(10_000, 1000, seed=0), sample_tokens(10_000, 1000, seed=0)
    assert len(a) == 500 and (a == b).all() and (np.diff(a) > 0).all()
    assert len(sample_tokens(100, 1000)) == 100 and len(sample_tokens(100, None)) == 100


def test_matrix_data_maps_points_back_to_heads_and_tokens():
    n = 50
    rng = np.random.default_rng(1)
    store = {(l, h): rng.normal(size=(2 * n, 2)).astype(np.float32) for l in range(3) for h in range(4)}
    store[(1, 2)] = None
    rho = {k: -0.5 for k in store}
    rho[(2, 3)] = -0.1
    md = build_matrix_data([0, 1, 2], [0, 1, 2, 3], n, lambda l, h: store[(l, h)], rho, 40, "grid", 0.3)
    assert (1, 2) in md.missing and (2, 3) in md.filtered and len(md.shown) == 10
    assert md.per_head == 40 and len(md.x) == 400
    l, h, tok, is_key = md.point_to_head(md.offsets[3] + 25)  # interleaved: query, key, query, key, …
    assert (l, h) == md.shown[3] and tok == md.idx[12] and is_key
    assert md.point_to_head(md.offsets[3] + 24)[2:] == (md.idx[12], False)
    assert md.point_to_head(10_000) is None
    outside = np.setdiff1d(np.arange(n), md.idx)[:2]  # tokens not in the sample: still drawn by the overlay
    ov = overlay_points(md, lambda l, h: store[(l, h)], outside)
    assert len(ov.x) == 2 * 2 * len(md.shown)
    assert ov.point_to_head(4 * 3 + 3)[:3] == (*md.shown[3], outside[1])


# ---------------------------------------------------------------- colours
def test_color_schemes_sizes_and_mod5_pairs():
    toks = _tokens(["[CLS]", "the", "cat", ",", "sat", "[SEP]", "[CLS]", "a", "##b", "[SEP]"],
                   [0] * 6 + [1] * 4, list(range(6)) + list(range(4)))
    idx = np.arange(10)
    for scheme in ("qk", "norm_position", "position_mod5", "token_length", "punctuation", "frequency"):
        spec = color_spec(scheme, toks, idx)
        assert len(spec.values) == 20 and spec.values.dtype == np.uint8
        assert spec.colorscale[0][0] == 0 and spec.colorscale[-1][0] == 1
    qk = color_spec("qk", toks, idx).values
    assert (qk[:10] == 0).all() and (qk[10:] == 1).all()
    mod5 = color_spec("position_mod5", toks, idx)
    q, k = mod5.values[:10], mod5.values[10:]
    assert ((q - 5) == k).all() and (k == toks["position"] % 5).all()  # same hue index, queries darker
    assert len(MOD5_KEYS) == len(MOD5_QUERIES) == 5
    punct = color_spec("punctuation", toks, idx).values[:10]
    assert list(punct) == [1, 0, 0, 1, 0, 1, 1, 0, 0, 1]
    npos = color_spec("norm_position", toks, idx).values
    assert (npos[:10] >= 128).all() and (npos[10:] < 128).all()
    norm = color_spec("embedding_norm", toks, idx, norms=np.linspace(1, 2, 20)).values
    assert norm.min() == 1 and norm.max() == 255


def test_image_color_schemes():
    toks = _tokens(["[CLS]"] + [f"p{i}" for i in range(4)], [0] * 5, range(5))
    toks["patch_row"] = np.array([-1, 0, 0, 1, 1], np.int16)
    toks["patch_col"] = np.array([-1, 0, 1, 0, 1], np.int16)
    toks["patch_rgb"] = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)
    idx = np.arange(5)
    assert list(color_spec("patch_row", toks, idx).values[:5]) == [0, 1, 1, 2, 2]
    assert list(color_spec("patch_col", toks, idx).values[:5]) == [0, 1, 2, 1, 2]
    pc = color_spec("patch_color", toks, idx).values[:5]
    assert pc[0] == 0 and len(set(pc[1:].tolist())) == 4


# ---------------------------------------------------------------- search
def test_search_exact_case_insensitive_and_markers():
    texts = normalised_texts(["The", "the", "\u0120the", "##the", "then", "THE", "cat"])
    res = search_tokens(texts, "the")
    assert res.n_tokens == 5 and not res.error
    assert search_tokens(texts, "THE").n_tokens == 5
    assert search_tokens(texts, "dog").n_tokens == 0 and "no token" in search_tokens(texts, "dog").message
    assert search_tokens(texts, "").mask is None and search_tokens(texts, "   ").mask is None


def test_search_regex_and_bad_regex():
    texts = normalised_texts(["the", "then", "cat", "Cats", "a"])
    assert search_tokens(texts, "^the", regex=True).n_tokens == 2
    assert search_tokens(texts, "CAT", regex=True).n_tokens == 2
    bad = search_tokens(texts, "(unclosed", regex=True)
    assert bad.error and bad.mask is None and "not a valid regular expression" in bad.message


def test_normalise_token():
    assert normalise_token("##ing") == "ing" and normalise_token("\u0120Hello") == "hello"
    assert normalise_token("\u2581World") == "world"


# ---------------------------------------------------------------- attention maths
def test_attention_equals_direct_softmax_and_causal_mask():
    rng = np.random.default_rng(2)
    q, k = rng.normal(size=(7, 16)), rng.normal(size=(7, 16))
    scale = 16 ** -0.5
    a = attention(q, k, scale)
    s = q @ k.T * scale
    direct = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    assert np.allclose(a, direct)
    c = attention(q, k, scale, causal=True)
    assert np.allclose(np.triu(c, 1), 0) and np.allclose(c.sum(1), 1)
    assert np.allclose(c[0], np.eye(7)[0])
    big = attention(q * 1000, k * 1000, scale)  # numerically stable
    assert np.isfinite(big).all()


def test_hide_and_renormalise():
    a = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]])
    b = hide_and_renormalise(a, [0])
    assert np.allclose(b[:, 0], 0)
    assert np.allclose(b[0], [0, 0.3 / 0.5, 0.2 / 0.5])
    assert np.allclose(b[1], [0, 0.1 / 0.9, 0.8 / 0.9])
    assert np.allclose(b[2], 0)  # all mass hidden -> zero row, no NaN
    assert np.allclose(hide_and_renormalise(a, []), a)
    assert top_keys(a[1], 2, 0.05) == [(2, 0.8), (0, 0.1)] or top_keys(a[1], 2, 0.05)[0] == (2, 0.8)
    assert top_keys(a[1], 2, 0.5) == [(2, 0.8)]


def test_aggregate_by_position():
    rng = np.random.default_rng(3)
    lengths = [4, 6, 5]
    input_id = np.repeat(np.arange(3), lengths)
    position = np.concatenate([np.arange(n) for n in lengths])
    q, k = rng.normal(size=(15, 8)), rng.normal(size=(15, 8))
    idx = InputIndex(input_id, position)
    agg = aggregate_by_position(q, k, idx, 0.3, False, 6)
    assert agg.shape == (6, 6) and np.allclose(agg.sum(1), 1)
    # cell (5, 5): only input 1 has position 5 -> its attention, renormalised within the row
    a1 = attention(q[4:10], k[4:10], 0.3)
    assert np.allclose(agg[5], a1[5] / a1[5].sum())
    # cell (0, 0): mean over all three inputs, then the row renormalised
    rows = [attention(q[s:s + n], k[s:s + n], 0.3) for s, n in ((0, 4), (4, 6), (10, 5))]
    mean0 = np.array([np.mean([r[0, j] for r in rows if j < len(r)]) for j in range(6)])
    assert np.allclose(agg[0], mean0 / mean0.sum())
    assert downsample(np.ones((100, 100)), 24).shape == (24, 24)


def test_input_index_and_context():
    idx = InputIndex(np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0]))
    assert list(idx.rows(0)) == [3, 1] and list(idx.rows(1)) == [2, 0] and len(idx.rows(9)) == 0
    s = context_string(["the", "cat", "sat"], 1)
    assert s == "«the [cat] sat»"
    long = context_string([f"w{i}" for i in range(100)], 50)
    assert "[w50]" in long and long.startswith("«…") and long.endswith("…»") and len(long) < 100


def test_typed_arrays():
    t = typed(np.arange(4, dtype=np.uint16))
    assert t["dtype"] == "u2" and isinstance(t["bdata"], str)
    assert typed(np.zeros((2, 3), np.float32))["shape"] == "2,3"


# ---------------------------------------------------------------- URL state
def test_url_round_trip():
    state = dict(DEFAULTS, run="r1", proj="umap", dim=3, translate=False, color="position_mod5", q="the cat",
                 regex=True, layer=3, head=7, token=42, lod=0, sort="rho", rho=0.5, hide="cls,sep")
    s = serialise(state)
    back, problems = parse(s)
    assert problems == [] and back == state
    assert serialise(DEFAULTS) == ""
    assert parse("")[0] == DEFAULTS and parse(None)[0] == DEFAULTS


@pytest.mark.parametrize("bad", ["?layer=-1", "?layer=abc", "?dim=7", "?proj=xyz", "?rho=5", "?translate=maybe",
                                 "?token=-3", "?lod=12"])
def test_url_malformed_values_fall_back(bad):
    state, problems = parse(bad)
    key = bad[1:].split("=")[0]
    assert state[key] == DEFAULTS[key] and len(problems) == 1


def test_url_garbage_is_ignored():
    state, problems = parse("?%%%&&==&unknown=1&layer=2&layer=x")
    assert state["layer"] == 2 and len(problems) == 1


def test_grid_cells_sort_by_rho_within_layer():
    from figures.tiling import grid_cells
    rho = {(0, 0): -0.1, (0, 1): -0.9, (0, 2): 0.5, (1, 0): None, (1, 1): -0.2, (1, 2): -0.3}
    cells = grid_cells([0, 1], [0, 1, 2], rho, "rho")
    assert cells[(0, 1)] == (0, 0) and cells[(0, 2)] == (0, 1) and cells[(0, 0)] == (0, 2)
    assert cells[(1, 2)] == (1, 0) and cells[(1, 0)] == (1, 2)  # unknown ρ sorts last
    assert grid_cells([0, 1], [0, 1, 2], rho, "grid")[(0, 2)] == (0, 2)


def test_single_view_token_text_is_escaped_for_plotly():
    """Plotly reads '<…>' in text as markup: BART's '</s>' used to vanish from the Single View."""
    import numpy as np
    from figures.colors import color_spec
    from figures.views import single_figure
    words = ["<s>", "a&b", "</s>"]
    coords = np.arange(12, dtype=np.float32).reshape(6, 2)
    spec = color_spec("qk", {}, np.arange(3))
    fig = single_figure(coords, words, np.arange(3), None, spec, "t")
    texts = [t for tr in fig.data if tr.text is not None for t in tr.text]
    assert "&lt;/s&gt;" in texts and "a&amp;b" in texts
    assert not any("<" in t for t in texts)
