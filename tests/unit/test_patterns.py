"""Head pattern scores: synthetic attention with known patterns, a naive reference implementation
of every definition, causal / image n/a handling, sampling, the run-level reader and the Matrix
View's order/shading by a score."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.patterns import MASS, PATTERNS, PatternScorer, dominant, is_punctuation, pattern_scores, token_flags
from precompute.metrics import attention_from_qk

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "far"]


def text_inputs(n=24, lo=7, hi=18, seed=0, punct=True, cls=True):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        L = int(rng.integers(lo, hi))
        body = [str(w) for w in rng.choice(WORDS + ([",", "."] if punct else []), size=L - (2 if cls else 0))]
        toks = (["[CLS]"] + body + ["[SEP]"]) if cls else body
        out.append(toks)
    return out


def flags_of(inputs, image=False):
    return [token_flags(t, np.arange(len(t)), image=image) for t in inputs]


def causal_rows(A):
    A = np.tril(A)
    return A / A.sum(1, keepdims=True)


def head(inputs, fn, causal=False):
    out = []
    for t in inputs:
        A = fn(len(t), t)
        out.append(causal_rows(A) if causal else A)
    return out


def prev_head(L, _t):
    A = np.zeros((L, L))
    A[0, 0] = 1
    A[np.arange(1, L), np.arange(L - 1)] = 1
    return A


def first_head(L, _t):
    A = np.zeros((L, L))
    A[:, 0] = 1
    return A


def self_head(L, _t):
    return np.eye(L)


def next_head(L, _t):
    A = np.zeros((L, L))
    A[np.arange(L - 1), np.arange(1, L)] = 1
    A[L - 1, L - 1] = 1
    return A


def last_sep_head(L, _t):
    A = np.zeros((L, L))
    A[:, L - 1] = 1
    return A


def uniform_head(L, _t):
    return np.full((L, L), 1.0 / L)


def mass_only(s):
    return {k: s[k] for k in MASS}


# ------------------------------------------------------------------ known patterns
def test_pure_previous_token_head():
    inp = text_inputs()
    s = pattern_scores(head(inp, prev_head), flags_of(inp))
    assert s["prev"] == pytest.approx(1.0, abs=1e-12)
    for k in ("first", "sep", "next", "self"):
        assert s[k] == pytest.approx(0.0, abs=1e-12), k
    assert s["broad"] == pytest.approx(0.0, abs=1e-12)
    assert s["positional"] > 0.9  # offset −1 everywhere but row 0 (which attends to itself)
    assert dominant(s) == ("prev", pytest.approx(1.0))


@pytest.mark.parametrize("fn, name", [(first_head, "first"), (self_head, "self"), (next_head, "next")])
def test_pure_heads_score_one_on_their_pattern_and_zero_elsewhere(fn, name):
    inp = text_inputs(seed=3)
    s = pattern_scores(head(inp, fn), flags_of(inp))
    for k in MASS:
        assert s[k] == pytest.approx(1.0 if k == name else 0.0, abs=1e-12), (name, k, s)
    assert dominant(s)[0] == name


def test_sep_head_without_punctuation():
    """All mass on the final [SEP]: sep = 1 (queries next to [SEP] have no sep target and are not
    counted; [SEP] is never a 'next' target), every other mass pattern 0."""
    inp = text_inputs(punct=False, seed=4)
    s = pattern_scores(head(inp, last_sep_head), flags_of(inp))
    assert mass_only(s) == pytest.approx({"first": 0, "sep": 1, "prev": 0, "next": 0, "self": 0}, abs=1e-12)
    # eligible queries: positions 0..L−3 of each input
    assert s["n/sep"] == sum(len(t) - 2 for t in inp)


def test_content_head_is_not_positional_and_uniform_head_is_broad():
    inp = text_inputs(seed=5)
    s_first = pattern_scores(head(inp, first_head), flags_of(inp))
    s_uni = pattern_scores(head(inp, uniform_head), flags_of(inp))
    # attending to key 0 from every query: the offset changes with the query → poorly explained
    assert s_first["positional"] < 0.5
    assert s_uni["broad"] == pytest.approx(1.0, abs=1e-12)
    assert s_uni["positional"] > 0.9
    # uniform: first = mean over queries i ≥ 2 of 1/L, exactly
    exp = np.mean([1 / len(t) for t in inp for i in range(len(t)) if i >= 2])
    assert s_uni["first"] == pytest.approx(exp, abs=1e-12)
    assert dominant(s_uni)[0] == "broad"


def test_causal_next_is_na_and_prev_head_scores_one():
    inp = text_inputs(seed=6)
    s = pattern_scores(head(inp, prev_head, causal=True), flags_of(inp), causal=True)
    assert s["next"] is None and s["n/next"] == 0
    assert s["prev"] == pytest.approx(1.0, abs=1e-12)
    assert s["first"] == s["sep"] == s["self"] == 0.0
    # row 0 of a causal input has one allowed key: excluded from entropy / positional
    assert s["n/broad"] == sum(len(t) - 1 for t in inp)
    # a causal uniform head (uniform over the prefix) is maximally broad
    su = pattern_scores(head(inp, uniform_head, causal=True), flags_of(inp), causal=True)
    assert su["broad"] == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------ naive reference
def naive_scores(attns, inputs, causal):
    """Straight from the definitions, query by query (loops, no vectorisation)."""
    sums = {k: 0.0 for k in MASS}
    cnt = {k: 0 for k in MASS}
    ent, n_ent = 0.0, 0
    for A, toks in zip(attns, inputs):
        L = len(toks)
        f = token_flags(toks, np.arange(L))
        F = f["first"] | f["cls"]
        S = (f["sep"] | f["punct"]) & ~F
        for i in range(L):
            keys = [j for j in range(L) if (j <= i or not causal)]
            tg = {"first": [j for j in keys if F[j] and abs(j - i) > 1],
                  "sep": [j for j in keys if S[j] and abs(j - i) > 1],
                  "prev": [j for j in keys if j == i - 1 and not (F[j] or S[j])],
                  "self": [j for j in keys if j == i and not (F[j] or S[j])],
                  "next": [j for j in keys if j == i + 1 and not (F[j] or S[j])]}
            for k, js in tg.items():
                if js:
                    sums[k] += sum(A[i, j] for j in js)
                    cnt[k] += 1
            if len(keys) >= 2:
                p = np.array([A[i, j] for j in keys])
                p = p[p > 0]
                ent += float(-(p * np.log(p)).sum() / np.log(len(keys)))
                n_ent += 1
    # positional: profile by offset, fitted on the other fold (inputs alternate), pooled fallback
    prof = {0: {}, 1: {}}
    for m, (A, toks) in enumerate(zip(attns, inputs)):
        L = len(toks)
        for i in range(L):
            for j in range(L):
                if causal and j > i:
                    continue
                s, c = prof[m % 2].get(j - i, (0.0, 0))
                prof[m % 2][j - i] = (s + A[i, j], c + 1)

    def P(fold, d):
        s, c = prof[fold].get(d, (0.0, 0))
        if c:
            return s / c
        s0, c0 = prof[0].get(d, (0.0, 0))
        s1, c1 = prof[1].get(d, (0.0, 0))
        return (s0 + s1) / (c0 + c1)
    tv, n_tv = 0.0, 0
    for m, (A, toks) in enumerate(zip(attns, inputs)):
        L = len(toks)
        for i in range(L):
            keys = [j for j in range(L) if (j <= i or not causal)]
            if len(keys) < 2:
                continue
            pred = np.array([P(1 - m % 2, j - i) for j in keys])
            pred = pred / pred.sum() if pred.sum() > 0 else np.full(len(keys), 1 / len(keys))
            tv += 0.5 * float(np.abs(np.array([A[i, j] for j in keys]) - pred).sum())
            n_tv += 1
    out = {k: (sums[k] / cnt[k] if cnt[k] else None) for k in MASS}
    if causal:
        out["next"] = None
    out["broad"] = ent / n_ent
    out["positional"] = 1 - tv / n_tv
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_scores_match_a_naive_reference_on_random_attention(causal):
    rng = np.random.default_rng(11)
    inp = text_inputs(n=14, seed=12)
    attns = []
    for t in inp:
        L = len(t)
        logits = rng.normal(size=(L, L)) * 2.0 + 3.0 * np.eye(L, k=-1)  # some structure
        if causal:
            logits = np.where(np.tril(np.ones((L, L), bool)), logits, -np.inf)
        A = np.exp(logits - logits.max(1, keepdims=True))
        attns.append(A / A.sum(1, keepdims=True))
    got = pattern_scores(attns, flags_of(inp), causal=causal)
    ref = naive_scores(attns, inp, causal)
    for k in PATTERNS:
        if ref[k] is None:
            assert got[k] is None, k
        else:
            assert got[k] == pytest.approx(ref[k], abs=1e-10), k


def test_scores_are_deterministic_and_independent_of_input_batching():
    inp = text_inputs(n=30, lo=4, hi=40, seed=8)
    rng = np.random.default_rng(2)
    attns = [rng.dirichlet(np.ones(len(t)), size=len(t)) for t in inp]
    a = pattern_scores(attns, flags_of(inp))
    b = pattern_scores(attns, flags_of(inp))
    assert a == b
    import analysis.patterns as P
    old = P.MAX_PAD_WASTE
    try:
        P.MAX_PAD_WASTE = 100.0  # one big padded batch instead of many small ones
        c = pattern_scores(attns, flags_of(inp))
    finally:
        P.MAX_PAD_WASTE = old
    for k in PATTERNS:
        assert c[k] == pytest.approx(a[k], abs=1e-12)


def test_attention_from_qk_is_exact():
    """The scorer's batched attention equals precompute.metrics.attention_from_qk per input."""
    rng = np.random.default_rng(0)
    inp = text_inputs(n=9, seed=1)
    lens = [len(t) for t in inp]
    n = sum(lens)
    q, k = rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=(n, 8)).astype(np.float32)
    starts = np.r_[0, np.cumsum(lens)]
    for causal in (False, True):
        flags = flags_of(inp)
        for f, s0, L in zip(flags, starts, lens):
            f["rows"] = np.arange(s0, s0 + L)
        sc = PatternScorer(flags, causal=causal)
        flat = sc.attention(q, k, 0.35)
        ref = sc.flatten([attention_from_qk(q[s0:s0 + L], k[s0:s0 + L], causal, 0.35) for s0, L in zip(starts, lens)])
        assert np.abs(flat - ref).max() < 1e-12
        a, b = sc.scores(flat), sc.scores(ref)
        assert a.keys() == b.keys() and all(a[x] == pytest.approx(b[x], abs=1e-12) for x in a if a[x] is not None)


# ------------------------------------------------------------------ images
def image_inputs(n=3, R=4, C=5):
    out = []
    for _ in range(n):
        texts = ["CLS"] + [f"patch {r},{c}" for r in range(R) for c in range(C)]
        f = token_flags(texts, np.arange(len(texts)), image=True)
        f["patch_row"] = np.r_[-1, np.repeat(np.arange(R), C)]
        f["patch_col"] = np.r_[-1, np.tile(np.arange(C), R)]
        out.append(f)
    return out


def test_image_runs_text_patterns_na_and_2d_positional():
    R, C = 4, 5
    inp = image_inputs(R=R, C=C)
    L = 1 + R * C

    def left_neighbour():
        A = np.zeros((L, L))
        A[0, 0] = 1
        for t in range(1, L):
            r, c = divmod(t - 1, C)
            A[t, t - 1 if c > 0 else t] = 1  # the patch to the left (itself in column 0)
        return A

    def cls_head():
        A = np.zeros((L, L))
        A[:, 0] = 1
        return A
    rng = np.random.default_rng(0)

    def content_head():  # each query attends to a random patch, different in every image
        A = np.zeros((L, L))
        A[np.arange(L), rng.integers(1, L, size=L)] = 1
        return A
    s = pattern_scores([left_neighbour()] * 3, inp, image=True)
    assert s["sep"] is None and s["prev"] is None and s["next"] is None
    assert s["first"] == 0.0 and s["self"] == pytest.approx(R / (R * C))  # column-0 patches attend to self
    s_cls = pattern_scores([cls_head()] * 3, inp, image=True)
    assert s_cls["first"] == pytest.approx(1.0) and s_cls["self"] == 0.0
    # "the patch to the left" is the single 2D offset (0, −1) for 4/5 of the patches: the offset
    # profile puts 1/1.2 on it and 0.2/1.2 on (0, 0) → TV 1/6 on those rows, 0 on column 0
    assert s["positional"] == pytest.approx(1 - (R * C - R) / (R * C + 1) / 6, abs=1e-9)
    # prefix tokens have bins of their own: attending to [CLS] from everywhere is position-only
    assert s_cls["positional"] == pytest.approx(1.0)
    s_content = pattern_scores([content_head() for _ in range(3)], inp, image=True)
    assert s_content["positional"] < 0.3


# ------------------------------------------------------------------ flags, dominant
def test_token_flags_and_punctuation():
    assert all(is_punctuation(t) for t in [",", ".", "?!", " .", "\u0120,", "##.", "\u2014", "\u00bf"])
    assert not any(is_punctuation(t) for t in ["a", "", " ", "\n", "a.", "[SEP]", "1"])
    f = token_flags(["[CLS]", "hi", ",", "[SEP]"], [0, 1, 2, 3])
    assert f["first"].tolist() == [True, False, False, False]
    assert f["cls"].tolist() == [True, False, False, False]
    assert f["sep"].tolist() == [False, False, False, True]
    assert f["punct"].tolist() == [False, False, True, False]
    fi = token_flags(["CLS", "patch 0,0"], [0, 1], image=True)
    assert fi["cls"].tolist() == [True, False] and not fi["sep"].any() and not fi["punct"].any()


def test_dominant_rules():
    base = {"first": 0.1, "sep": 0.1, "prev": 0.1, "next": None, "self": 0.1, "broad": 0.5, "positional": 0.3}
    assert dominant({**base, "sep": 0.45}) == ("sep", 0.45)
    assert dominant({**base, "broad": 0.8}) == ("broad", 0.8)
    assert dominant({**base, "positional": 0.9}) == ("positional", 0.9)
    name, v = dominant(base)
    assert name == "content" and v == pytest.approx(0.7)


# ------------------------------------------------------------------ run level
def test_sample_inputs_budget_crop_and_skip():
    from analysis.head_scores import sample_inputs
    groups = [(i, np.arange(i * 100, i * 100 + 10 + i)) for i in range(40)]
    items, info = sample_inputs(groups, causal=False, budget=100, seed=0)
    assert info["sampled"] and info["n_tokens"] <= 100 and info["n_inputs_total"] == 40
    assert info["n_tokens"] == sum(len(r) for _, r in items)
    assert [i for i, _ in items] == sorted(i for i, _ in items)
    assert sample_inputs(groups, False, 100, 0)[0][0][0] == items[0][0]  # seeded: same choice
    items, info = sample_inputs(groups, causal=False, budget=10_000)
    assert not info["sampled"] and info["n_inputs"] == 40
    long = [(0, np.arange(50)), (1, np.arange(50, 55))]
    _, info = sample_inputs(long, causal=False, budget=1000, max_len=20)
    assert info["skipped_long"] == 1 and info["n_inputs"] == 1
    items, info = sample_inputs(long, causal=True, budget=1000, max_len=20)
    assert info["cropped_long"] == 1 and len(items[0][1]) == 20 and items[0][1][0] == 0


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from tests.store_fixture import make_test_store
    d = tmp_path_factory.mktemp("patterns-store")
    make_test_store(d, "text", n_layers=2, n_heads=3, n_inputs=10, run_id="enc", methods=("pca",), dims=(2,),
                    variants=("translated",))
    make_test_store(d, "text", n_layers=2, n_heads=2, n_inputs=8, run_id="dec", methods=("pca",), dims=(2,),
                    variants=("translated",), causal=True, seed=3)
    make_test_store(d, "image", n_layers=1, n_heads=2, n_inputs=3, run_id="img", methods=("pca",), dims=(2,),
                    variants=("translated",), grid=4)
    return d


def test_head_scores_gathers_rho_patterns_and_ablation(stores, tmp_path):
    import shutil

    from analysis import head_scores as hs
    from attention_atlas.dashboard_data import Data
    from precompute.store import Store
    d = tmp_path / "s"
    shutil.copytree(stores, d)
    data = Data(d)
    scores = hs.head_scores(data, "enc")
    assert set(scores) == {"rho", *PATTERNS}
    assert scores["rho"] == {k: v for k, v in data.rho("enc", "translated").items() if v is not None}
    # one head recomputed by hand: attention per input from the stored q/k
    m, tok = data.manifest("enc"), data.tokens("enc")
    q, k = data.qk("enc", 1, 2)
    attns, flags = [], []
    for _, rows in tok.index:
        attns.append(attention_from_qk(q[rows], k[rows], False, m["model"]["scale"]))
        flags.append(token_flags(tok.text[rows], np.asarray(tok.arrays["position"])[rows]))
    ref = pattern_scores(attns, flags)
    for p in PATTERNS:
        assert scores[p][(1, 2)] == pytest.approx(ref[p], abs=1e-12), p
    # causal: next is n/a → absent; image: text-only patterns absent
    assert "next" not in hs.head_scores(data, "dec") and "prev" in hs.head_scores(data, "dec")
    assert set(hs.head_scores(data, "img")) == {"rho", "first", "self", "broad", "positional"}
    # ablation effects, written by another job, join in
    Store(d).put_analysis("enc", "ablation", {"zero": {"objective": "loss", "single": {
        "0:1": {"delta": 0.25, "ci_low": 0.2, "ci_high": 0.3}, "1:0": {"delta": -0.5, "ci_low": -0.6, "ci_high": -0.4},
        "bad": {"delta": 1.0}}}})
    data.clear()
    s2 = hs.head_scores(data, "enc")
    assert s2["ablation-zero"] == {(0, 1): 0.25, (1, 0): -0.5} and "ablation-mean" not in s2


def test_store_patterns_written_then_read_back(stores, tmp_path):
    import shutil

    from analysis import head_scores as hs
    from attention_atlas.dashboard_data import Data
    from precompute.store import Store
    d = tmp_path / "s"
    shutil.copytree(stores, d)
    rp = hs.store_patterns(Store(d), "enc")
    assert rp.source == "computed"
    js = Store(d, readonly=True).analysis("enc", "patterns")
    assert js["version"] == hs.VERSION and len(js["heads"]) == 6
    back = hs.run_patterns(Data(d), "enc")   # a new Data: its own caches, so read from the store
    assert back.source == "store"
    assert back.scores == rp.scores
    assert np.allclose(back.related["dist"], rp.related["dist"]) and back.related["heads"] == rp.related["heads"]
    assert back.similar(0, 0) == rp.similar(0, 0)


# ------------------------------------------------------------------ Matrix View order + shading
def test_matrix_ordered_and_shaded_by_a_pattern_score(stores):
    from analysis.head_scores import head_scores
    from attention_atlas.dashboard_data import Data
    from figures.matrix import matrix_figure, overlay_figure
    data = Data(stores)
    prev = head_scores(data, "enc")["prev"]
    md = data.matrix("enc", "translated", "pca", 0, "prev", 0.0)
    assert md.order == "prev" and md.score_label == "prev"
    for layer in (0, 1):
        by_col = sorted((c, h) for (l, h), (r, c) in md.cells.items() if l == layer)
        ranked = sorted(range(3), key=lambda h: (-prev[(layer, h)], h))
        assert [h for _, h in by_col] == ranked
    fig = matrix_figure(md, np.zeros(len(md.x), np.uint8), [[0, "#000"], [1, "#000"]])
    shapes = fig.layout.shapes
    assert len(shapes) == 6
    # the shade's opacity is proportional to the score
    for sh in shapes:
        col = int(round(sh.x0 / md.cell))
        row = md.n_rows - 1 - int(round(sh.y0 / md.cell))
        (l, h), = [k for k, v in md.cells.items() if v == (row, col)]
        alpha = float(sh.fillcolor.rsplit(",", 1)[1].rstrip(")"))
        assert alpha == pytest.approx(0.45 * prev[(l, h)], abs=1e-3)
    labels = [a.hovertext for a in overlay_figure(md, [[0, "#000"], [1, "#000"]]).layout.annotations]
    assert any(f"prev {prev[(1, 2)]:.2f}" in t and t.startswith("L1 H2") for t in labels)
    assert "ranked by prev" in fig.layout.xaxis.title.text


def test_matrix_order_that_does_not_apply_falls_back_to_grid(stores):
    from attention_atlas.dashboard_data import Data
    data = Data(stores)
    md = data.matrix("dec", "translated", "pca", 0, "next", 0.0)
    assert md.order == "grid" and not md.scores
    assert "n/a for this run (causal model: masked)" in md.note
    md = data.matrix("enc", "translated", "pca", 0, "ablation-mean", 0.0)
    assert md.order == "grid" and "no mean-ablation results" in md.note


def test_url_sort_choices_cover_every_score():
    from analysis.head_scores import SORT_SCORES
    from figures.urlstate import CHOICES, parse
    assert CHOICES["sort"] == {"grid", "rho", *SORT_SCORES}
    assert parse("?sort=positional")[0]["sort"] == "positional"
    state, problems = parse("?sort=bogus")
    assert state["sort"] == "grid" and problems


def test_partial_run_scores_the_heads_that_exist(tmp_path):
    """A head whose q/k are not stored yet has no scores, sorts last in the Matrix View and is
    listed as missing; the rest are scored as usual."""
    from analysis.head_scores import run_patterns
    from attention_atlas.dashboard_data import Data
    from precompute.store import Store, head_prefix
    from tests.store_fixture import make_test_store
    make_test_store(tmp_path, "text", n_layers=2, n_heads=3, n_inputs=6, run_id="p", methods=("pca",), dims=(2,),
                    variants=("translated",), missing_heads=[(1, 1)])
    st = Store(tmp_path)
    st._cache.delete(f"{head_prefix('p', 1, 1)}/qk")
    st.close()
    data = Data(tmp_path)
    rp = run_patterns(data, "p")
    assert rp.missing == [(1, 1)] and (1, 1) not in rp.scores and len(rp.heads) == 5
    assert (1, 1) not in rp.related["heads"] and rp.related["dist"].shape == (5, 5)
    assert rp.dominant(1, 1) is None and rp.similar(1, 1) == []
    md = data.matrix("p", "translated", "pca", 0, "self", 0.0)
    assert md.cells[(1, 1)] == (1, 2)  # no score: last in its layer
    from callbacks.patterns import patterns_outputs, single_analysis_children
    fig, table, note, head = patterns_outputs(data, "p", 1, 1, "self")
    assert "1 heads not stored yet" in note and "not stored yet" in head
    assert "not stored yet" in single_analysis_children(rp, 1, 1)


def test_matrix_rho_order_unchanged(stores):
    from attention_atlas.dashboard_data import Data
    from figures.tiling import grid_cells
    data = Data(stores)
    md = data.matrix("enc", "translated", "pca", 0, "rho", 0.0)
    assert md.order == "rho" and not md.score_label and not md.note
    assert md.cells == grid_cells([0, 1], [0, 1, 2], data.rho("enc", "translated"), "rho")
