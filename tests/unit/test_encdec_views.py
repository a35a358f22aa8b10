"""Encoder–decoder runs in the dashboard's view models (no Dash, no browser, no model): head kinds,
the joined source-then-target token table, one Matrix View grid per kind (a cross grid is target
queries + source keys), overlays, Sentence View lines target → source, the URL field."""
from __future__ import annotations

import numpy as np
import pytest

from figures.encdec import (grid_layers, grid_sides, head_label, head_sides, is_encdec, kind_options,
                            kinds_of, layer_label, not_applicable, resolve_kind)
from figures.matrix import build_matrix_data, matrix_colors, overlay_points, ring_points
from figures.sentence import sentence_lines

KINDS = ["encoder", "encoder", "decoder", "cross", "decoder", "cross"]
N_SRC, N_TGT = 7, 5


def manifest(kinds=KINDS):
    return {"id": "r", "layers": list(range(len(kinds))), "heads": [0, 1],
            "model": {"scale": 0.5, "causal": False,
                      "attention": [{"kind": k, "causal": k == "decoder", "window": None, "softcap": None}
                                    for k in kinds]}}


def test_kinds_grids_and_labels():
    m = manifest()
    assert is_encdec(m) and kinds_of(m) == ["encoder", "decoder", "cross"]
    assert grid_layers(m, "cross") == [3, 5] and grid_layers(m, "encoder") == [0, 1] and grid_layers(m, None) == m["layers"]
    assert resolve_kind(m, "auto", 4) == "decoder" and resolve_kind(m, "cross") == "cross" and resolve_kind(m, None) == "encoder"
    assert layer_label(m, 3) == "L3 cross" and head_label(m, 3, 1) == "L3 H1 (cross)"   # the id stays L3 H1
    assert [o["value"] for o in kind_options(m)] == ["encoder", "decoder", "cross"]
    plain = manifest(["self", "self"])
    assert not is_encdec(plain) and kinds_of(plain) == [] and kind_options(plain) == []
    assert resolve_kind(plain, "cross") is None and layer_label(plain, 1) == "L1"
    assert "cannot be chained" in not_applicable(m, "rollout", 3) and not_applicable(m, "rollout", 0) == ""
    assert not_applicable(plain, "related") == "" and "\n" not in not_applicable(m, "related")


def test_head_sides_index_the_joined_table():
    m = manifest()
    enc, dec, cross = (head_sides(m, l, N_SRC, N_TGT) for l in (0, 2, 3))
    assert (enc.q_off, enc.n_q, enc.k_off, enc.n_k) == (0, N_SRC, 0, N_SRC) and enc.square
    assert (dec.q_off, dec.n_q, dec.k_off, dec.n_k) == (N_SRC, N_TGT, N_SRC, N_TGT) and dec.square
    assert (cross.q_off, cross.n_q, cross.k_off, cross.n_k) == (N_SRC, N_TGT, 0, N_SRC) and not cross.square
    tok, key = cross.point_tokens()
    assert list(tok) == list(range(N_SRC, N_SRC + N_TGT)) + list(range(N_SRC)) and key.sum() == N_SRC
    assert cross.has_query([N_SRC + 1, 2]).tolist() == [True, False] and cross.has_key([N_SRC + 1, 2]).tolist() == [False, True]
    assert cross.key_row([2]).tolist() == [N_TGT + 2] and cross.query_row([N_SRC + 1]).tolist() == [1]
    assert grid_sides(m, "cross", N_SRC, N_TGT) == cross


def _cross_coords(seed=0):
    rng = np.random.default_rng(seed)
    return {(l, h): rng.normal(size=(N_TGT + N_SRC, 2)) for l in (3, 5) for h in (0, 1)}


def test_cross_grid_holds_target_queries_and_source_keys():
    m = manifest()
    sides = grid_sides(m, "cross", N_SRC, N_TGT)
    coords = _cross_coords()
    md = build_matrix_data(grid_layers(m, "cross"), [0, 1], N_SRC + N_TGT, lambda l, h: coords[(l, h)], {}, None,
                           sides=sides)
    assert md.layers == [3, 5] and len(md.shown) == 4 and md.kind == "cross" and not md.interleaved
    assert md.per_head == md.n_points == N_TGT + N_SRC and not md.sampled
    tok, key = md.point_tokens()
    assert set(tok[~key]) == set(range(N_SRC, N_SRC + N_TGT))      # queries: every target token
    assert set(tok[key]) == set(range(N_SRC))                      # keys: every source token
    for p in range(len(md.x)):                                     # every point names its head, token and role
        layer, head, t, is_key = md.point_to_head(p)
        local = p - md.offsets[md.shown.index((layer, head))]
        row = md.pt_rows[local]
        assert is_key == (row >= N_TGT) and t == (row - N_TGT if is_key else N_SRC + row)
    # a sample keeps queries and keys in proportion
    small = build_matrix_data([3, 5], [0, 1], N_SRC + N_TGT, lambda l, h: coords[(l, h)], {}, 6, sides=sides)
    assert small.per_head == 6 and small.sampled and 0 < small.pt_key.sum() < 6
    # colours follow each point's role (query green code 0, key pink code 1)
    from figures.colors import color_spec
    toks = {"text": np.array(["w"] * (N_SRC + N_TGT))}
    cols, _ = matrix_colors(md, lambda l, h: color_spec("qk", toks, md.pt_tok))
    assert np.array_equal(cols, np.tile(md.pt_key.astype(np.uint8), 4))


def test_overlays_in_a_cross_grid():
    m = manifest()
    sides = grid_sides(m, "cross", N_SRC, N_TGT)
    coords = _cross_coords()
    md = build_matrix_data([3, 5], [0, 1], N_SRC + N_TGT, lambda l, h: coords[(l, h)], {}, None, sides=sides)
    ov = overlay_points(md, lambda l, h: coords[(l, h)], [1, N_SRC + 2, 3])   # source 1, 3 (keys), target 2 (query)
    assert list(ov.tokens) == [1, 3, N_SRC + 2] and ov.pt_key.tolist() == [True, True, False]
    assert len(ov.x) == 3 * len(md.shown)
    assert ov.point_to_head(3 + 2) == (3, 1, N_SRC + 2, False)
    # each overlay point sits where the head's full picture has it
    i = md.shown.index((3, 1))
    fit = md.fits[i]
    x, y = fit.apply(coords[(3, 1)][[N_TGT + 1, N_TGT + 3, 2]])
    assert np.array_equal(ov.x[3:6], x) and np.array_equal(ov.y[3:6], y)
    rx, _ = ring_points(ov, N_SRC + 2)
    assert len(rx) == len(md.shown)          # a target token has one point (its query) per cross head
    layout = overlay_points(md, None, [1, N_SRC + 2])
    assert len(layout.x) == 2 * len(md.shown) and layout.point_to_head(1) == (3, 0, N_SRC + 2, False)


def test_self_grids_unchanged_for_plain_runs():
    """Runs without kinds: the same interleaved points as before (query of a token, then its key)."""
    rng = np.random.default_rng(1)
    c = {(l, h): rng.normal(size=(2 * 9, 2)) for l in (0, 1) for h in (0, 1)}
    md = build_matrix_data([0, 1], [0, 1], 9, lambda l, h: c[(l, h)], {}, None)
    tok, key = md.point_tokens()
    assert md.interleaved and md.kind is None and list(tok[:4]) == [0, 0, 1, 1] and list(key[:4]) == [False, True] * 2
    assert md.point_to_head(3) == (0, 0, 1, True)
    dec = build_matrix_data([2, 4], [0, 1], 99, lambda l, h: rng.normal(size=(2 * N_TGT, 2)), {}, None,
                            sides=grid_sides(manifest(), "decoder", N_SRC, N_TGT))
    assert dec.interleaved and dec.point_to_head(0)[2:] == (N_SRC, False)   # decoder tokens are target rows


def test_sentence_lines_go_from_target_to_source():
    rng = np.random.default_rng(2)
    a = rng.random((N_TGT, N_SRC))
    a /= a.sum(1, keepdims=True)
    tgt, src = [f"t{i}" for i in range(N_TGT)], [f"s{j}" for j in range(N_SRC)]
    model = sentence_lines(tgt, {0: a}, hidden=[0], key_words=src, min_weight=0.0, pair="ab",
                           segs=np.zeros(N_TGT, np.int8))
    hl = model.heads[0]
    assert model.words == tgt and model.kwords == src and model.pair == "all"
    assert hl.query.max() < N_TGT and hl.key.max() < N_SRC and 0 not in set(hl.key)     # hidden source key 0
    b = a[:, 1:] / a[:, 1:].sum(1, keepdims=True)
    np.testing.assert_allclose(hl.weight, b[hl.query, hl.key - 1], atol=1e-12)
    focus = sentence_lines(tgt, {0: a}, focus=("key", 6), key_words=src, min_weight=0.0)
    assert set(focus.heads[0].key) == {6} and len(focus.heads[0].query) == N_TGT
    with pytest.raises(ValueError, match="expected"):
        sentence_lines(tgt, {0: a.T}, key_words=src)
    from figures.views import sentence_figure
    fig = sentence_figure(model, "x")
    assert list(fig.data[-2].text) == tgt and list(fig.data[-1].text) == src


def test_url_field_kind():
    from figures.urlstate import FIELD, parse, serialise
    state, problems = parse("?kind=cross&layer=3")
    assert state["kind"] == "cross" and state["layer"] == 3 and not problems
    assert serialise(state) == "?layer=3&kind=cross"
    state, problems = parse("?kind=sideways")
    assert state["kind"] == "auto" and problems and FIELD["kind"].component == "kind-select"


def test_joined_token_table_and_side_rows():
    from attention_atlas.dashboard_data import RunTokens

    def table(lengths, word):
        t = {"text": [], "input_id": [], "position": [], "token_id": [], "norm_position": [], "input_length": []}
        for i, n in enumerate(lengths):
            t["text"] += [f"{word}{i}.{p}" for p in range(n)]
            t["input_id"] += [i] * n
            t["position"] += list(range(n))
            t["token_id"] += list(range(n))
            t["norm_position"] += [p / max(n - 1, 1) for p in range(n)]
            t["input_length"] += [n] * n
        return {k: np.asarray(v) for k, v in t.items()}
    rt = RunTokens(table([3, 4], "s"), ["a", "b"], table([2, 3], "t"))
    assert (rt.n_src, rt.n_tgt, rt.n) == (7, 5, 12)
    assert rt.side_rows(1, 0).tolist() == [3, 4, 5, 6] and rt.side_rows(1, 1).tolist() == [9, 10, 11]
    assert rt.index.rows(1).tolist() == [3, 4, 5, 6, 9, 10, 11]
    assert rt.contexts[9].endswith("(target)") and rt.text[9] == "t1.0"
    sd = rt.sides(manifest(), 3)
    assert (sd.q_off, sd.n_q, sd.k_off, sd.n_k) == (7, 5, 0, 7)
    plain = RunTokens(table([3], "s"), None)
    assert plain.n == plain.n_src == 3 and plain.n_tgt == 0 and not plain.side.any()


def test_cross_heads_have_no_pattern_scores_and_say_why():
    """Head patterns: encoder heads over the source, decoder heads (causal) over the target, cross
    heads left out with one line saying why."""
    from analysis.head_scores import CROSS_NA, compute_run_patterns
    from attention_atlas.dashboard_data import RunTokens
    rng = np.random.default_rng(3)
    src = {"text": np.array(list("abcdefg")), "input_id": np.zeros(7, int), "position": np.arange(7)}
    tgt = {"text": np.array(list("vwxyz")), "input_id": np.zeros(5, int), "position": np.arange(5)}
    rt = RunTokens(src, None, tgt)
    m = manifest()
    n = {"encoder": (N_SRC, N_SRC), "decoder": (N_TGT, N_TGT), "cross": (N_TGT, N_SRC)}
    qk = {(l, h): (rng.normal(size=(n[k][0], 4)), rng.normal(size=(n[k][1], 4)))
          for l, k in enumerate(KINDS) for h in (0, 1)}
    rp = compute_run_patterns(m, rt.arrays, rt.index, lambda l, h: qk[(l, h)], side=rt.side)
    assert sorted(rp.heads) == [(l, h) for l in (0, 1, 2, 4) for h in (0, 1)] and rp.related == {}
    assert rp.scores[(2, 0)]["next"] is None and rp.scores[(0, 0)]["next"] is not None   # decoder: causal
    assert "\n" not in CROSS_NA and "different sequences" in CROSS_NA
    # a decoder head scores as the same head of a plain causal run over the target tokens alone,
    # an encoder head as a plain bidirectional run over the source tokens
    for layer, table, causal in ((2, tgt, True), (0, src, False)):
        plain = {"id": "p", "layers": [0], "heads": [0, 1],
                 "model": {"scale": 0.5, "causal": causal, "attention": [{"kind": "self", "causal": causal}]}}
        alone = RunTokens(table, None)
        ref = compute_run_patterns(plain, alone.arrays, alone.index, lambda l, h: qk[(layer, h)])
        for h in (0, 1):
            assert rp.scores[(layer, h)] == pytest.approx(ref.scores[(0, h)], abs=1e-12)


# ---------------------------------------------------------------------------- Runs & precompute tab
def test_job_target_column_validated_in_one_line(tmp_path):
    """A job's target column: for .csv/.tsv corpora of encoder–decoder models; empty = the model
    generates the targets (greedy, bounded, as the CLI does); anything else one line naming the fix."""
    import json

    from jobs.runner import JobInvalid, validate_params
    from attention_atlas.settings import load_settings
    models, corpora = tmp_path / "models", tmp_path / "corpora"
    (models / "bart").mkdir(parents=True)
    (models / "bart" / "config.json").write_text(json.dumps({"model_type": "bart", "is_encoder_decoder": True}))
    (models / "bert").mkdir()
    (models / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    corpora.mkdir()
    (corpora / "pairs.csv").write_text("text,fr\nhello,salut\n")
    (corpora / "lines.txt").write_text("hello\n")
    settings = load_settings(env={}, cache=str(tmp_path / "store"), jobs_dir=str(tmp_path / "jobs"),
                             model_roots=str(models), corpus_roots=str(corpora))
    ok = validate_params({"model": "bart", "corpus": "pairs.csv", "target_column": " fr "}, settings)
    assert ok["target_column"] == "fr"
    assert validate_params({"model": "bart", "corpus": "pairs.csv", "target_column": ""}, settings)["target_column"] is None
    for params, words in (({"model": "bert", "corpus": "pairs.csv"}, "encoder–decoder"),
                          ({"model": "minilm", "corpus": "pairs.csv"}, "encoder–decoder"),
                          ({"model": "bart", "corpus": "lines.txt"}, ".csv"),
                          ({"model": "bart", "corpus": "pairs.csv", "text_column": "fr"}, "is the text column")):
        with pytest.raises(JobInvalid) as exc:
            validate_params({**params, "target_column": "fr"}, settings)
        assert words in str(exc.value) and "\n" not in str(exc.value)


def test_tsv_with_header_gives_source_target_pairs(tmp_path):
    from precompute.corpus import CorpusError, load_corpus
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("text\tfr\nhello, world\tsalut, le monde\n\tx\n")
    c = load_corpus(str(tsv), target_column="fr")
    assert (c.items, c.targets, c.skipped) == (["hello, world"], ["salut, le monde"], 1)
    with pytest.raises(CorpusError, match="needs a .csv corpus") as exc:
        load_corpus(str(tmp_path / "x.txt"), target_column="fr")
    assert "\n" not in str(exc.value)


def test_first_paint_picture_draws_the_grid_of_the_link(tmp_path):
    """The server-drawn first paint of an encoder–decoder link draws the grid the page will show:
    the URL's kind, else the kind of the URL's layer."""
    from callbacks import preview
    calls = []

    class FakeData:
        def run_ids(self):
            return ["r"]

        def manifest(self, run):
            return manifest()

        def info(self, run):
            from figures.runinfo import RunInfo
            return RunInfo.from_manifest(manifest())

    def fake_drawn_points(*args, **kw):
        calls.append(kw.get("kind"))
        raise StopIteration
    orig = preview.drawn_points
    preview.drawn_points = fake_drawn_points
    try:
        for query, want in (("?run=r&kind=cross", "cross"), ("?run=r&layer=2", "decoder"), ("?run=r", "encoder")):
            with pytest.raises(StopIteration):
                preview.preview_png(FakeData(), query)
            assert calls[-1] == want
    finally:
        preview.drawn_points = orig


def test_run_menu_counts_source_and_target_tokens():
    from callbacks.state import run_label
    m = dict(manifest(), corpus={"name": "pairs.csv", "n_tokens": 1234, "n_target_tokens": 567},
             model={**manifest()["model"], "name": "bart"}, projections=["pca"], created="2026-12-03T10:00")
    assert "1,234 source + 567 target tokens" in run_label(m, {"status": "complete"})
    plain = dict(m, corpus={"name": "demo", "n_tokens": 1234})
    assert "1,234 tokens" in run_label(plain, {"status": "complete"}) and "target" not in run_label(plain, {"status": "complete"})
