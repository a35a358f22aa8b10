"""The Sentence View model (figures/sentence.py), its figure, the aggregate heatmap and the
sentence-length colour scheme: checked against direct computations."""
from __future__ import annotations

import numpy as np
import pytest

from figures.attention import attention
from figures.colors import TEXT_SCHEMES, color_spec
from figures.sentence import (CLS_TEXTS, SEP_TEXTS, TokenRoles, below_note, head_color, head_colors, hidden_keys,
                              hide_options, pair_mask, segments, sentence_lines, token_roles)
from figures.views import HEAD_LINE, attention_heatmap, sentence_figure, sentence_lines_figure

BERT_SPECIAL = ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"]
SMOL_SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]


def _table(inputs):
    texts = [w for ws in inputs for w in ws]
    pos = [i for ws in inputs for i in range(len(ws))]
    return np.array(texts), np.array(pos)


def _rand_attention(n, seed, causal=False):
    rng = np.random.default_rng(seed)
    q, k = rng.normal(size=(n, 8)), rng.normal(size=(n, 8))
    return attention(q.astype(np.float32), k.astype(np.float32), 8 ** -0.5, causal)


# ---------------------------------------------------------------- special tokens
def test_roles_from_the_runs_special_tokens():
    texts, pos = _table([["[CLS]", "the", "cat", "[SEP]"], ["[CLS]", "a", "[SEP]", "b", "[SEP]"]])
    roles = token_roles(BERT_SPECIAL, texts, pos)
    assert roles.cls == ("[CLS]",) and roles.sep == ("[SEP]",) and not roles.fallback
    # declared but absent tokens ([UNK], [PAD], [MASK]) are not offered
    assert [o["label"] for o in hide_options(roles)] == ["first token", "[CLS]", "[SEP]"]
    assert [o["value"] for o in hide_options(roles)] == ["first", "cls", "sep"]


def test_causal_run_without_special_tokens_in_its_inputs_offers_first_token_only():
    texts, pos = _table([["The", " cat", " sat"], ["Where", " is", " it", "?"]])
    roles = token_roles(SMOL_SPECIAL, texts, pos)
    assert roles.cls == () and roles.sep == ()
    assert hide_options(roles) == [{"label": "first token", "value": "first"}]
    assert hidden_keys(["The", " cat"], ["first", "cls", "sep"], roles) == {0}
    # the run's own names, e.g. SmolLM2's <|im_start|> when its inputs hold it
    texts, pos = _table([["<|im_start|>", "user", "\n", "hi", "<|im_end|>"]])
    roles = token_roles(SMOL_SPECIAL, texts, pos)
    assert roles.cls == ("<|im_start|>",) and roles.sep == ("<|im_end|>",)
    assert [o["label"] for o in hide_options(roles)] == ["first token", "<|im_start|>", "<|im_end|>"]
    words = ["<|im_start|>", "user", "\n", "hi", "<|im_end|>"]
    assert hidden_keys(words, ["cls"], roles) == {0} and hidden_keys(words, ["sep"], roles) == {4}


def test_roles_are_the_runs_not_a_hard_coded_list():
    # RoBERTa-style names; and a token named like BERT's [SEP] that is NOT special in this run stays visible
    words = ["<s>", "Hello", "[SEP]", "</s>"]
    texts, pos = _table([words])
    roles = token_roles(["<s>", "</s>", "<pad>", "<unk>", "<mask>"], texts, pos)
    assert (roles.cls, roles.sep) == (("<s>",), ("</s>",))
    assert hidden_keys(words, ["sep"], roles) == {3}
    assert hidden_keys(words, ["sep"], None) == {2, 3}  # the old name sets would hide the plain word too


def test_old_manifest_without_special_tokens_falls_back_to_the_name_sets():
    texts, pos = _table([["[CLS]", "x", "[SEP]"]])
    roles = token_roles(None, texts, pos)
    assert roles.fallback and roles.declared is None
    assert set(roles.cls) <= CLS_TEXTS and set(roles.sep) <= SEP_TEXTS
    assert hidden_keys(["[CLS]", "x", "[SEP]"], ["cls", "sep"], roles) == {0, 2}
    assert hidden_keys(["[CLS]", "x", "[SEP]"], ["cls", "sep"]) == {0, 2}  # no roles at all: same rule as before
    assert TokenRoles.from_dict(roles.as_dict()) == roles


# ---------------------------------------------------------------- sentence A / B
def test_segments_equal_berts_token_type_ids_for_a_pair():
    from precompute.models.hf import display_tokens, load_tokenizer
    from precompute.models.packaged import builtin_folder
    tok = load_tokenizer(str(builtin_folder("minilm")[0]))
    enc = tok("The cat sat on the mat.", "It was tired.")
    words = display_tokens(tok, enc["input_ids"])
    texts, pos = _table([words])
    roles = token_roles(list(tok.all_special_tokens), texts, pos)
    seg = segments(words, roles)
    assert seg is not None and list(seg) == enc["token_type_ids"]
    single = display_tokens(tok, tok("The cat sat on the mat.")["input_ids"])
    assert segments(single, roles) is None  # the last [SEP] does not split


def test_pair_mask_and_lines_of_the_a_to_b_filter():
    words = ["[CLS]", "a1", "a2", "[SEP]", "b1", "b2", "b3", "[SEP]"]
    roles = TokenRoles(("[CLS]",), ("[SEP]",), tuple(BERT_SPECIAL))
    seg = segments(words, roles)
    assert list(seg) == [0, 0, 0, 0, 1, 1, 1, 1]
    n = len(words)
    a = _rand_attention(n, 1)
    for which, (qs, ks) in {"ab": (0, 1), "ba": (1, 0), "aa": (0, 0), "bb": (1, 1)}.items():
        mask = pair_mask(seg, which)
        assert (mask == ((seg[:, None] == qs) & (seg[None, :] == ks))).all()
        model = sentence_lines(words, {3: a}, (), None, which, seg, min_weight=0.05)
        hl = model.heads[0]
        expect = {(i, j) for i in range(n) for j in range(n) if mask[i, j] and a[i, j] >= 0.05}
        assert set(zip(hl.query.tolist(), hl.key.tolist())) == expect
        np.testing.assert_allclose(hl.weight, a[hl.query, hl.key])  # not renormalised by the filter
        under = mask & (a < 0.05) & (a > 0)
        assert hl.below == under.sum() and hl.below_mass == pytest.approx(a[under].sum())
        assert (model.query_active == (seg == qs)).all() and (model.key_active == (seg == ks)).all()
    assert pair_mask(None, "ab") is None and pair_mask(seg, "all") is None
    # one segment: the filter does not apply (everything stays)
    model = sentence_lines(words, {0: a}, (), None, "ab", None, min_weight=0.0)
    assert model.pair == "all" and len(model.heads[0].weight) == (a > 0).sum()


# ---------------------------------------------------------------- lines of several heads
def test_lines_of_several_heads_hide_renormalise_and_focus():
    n = 9
    words = [f"w{i}" for i in range(n)]
    attn = {h: _rand_attention(n, 10 + h, causal=True) for h in (0, 2, 5)}
    colors = head_colors([0, 2, 5], list(range(6)))
    assert colors == {0: head_color(0, 6), 2: head_color(2, 6), 5: head_color(5, 6)}
    model = sentence_lines(words, attn, hidden=[0], focus=None, colors=colors)
    assert [h.head for h in model.heads] == [0, 2, 5]
    for hl in model.heads:
        a = attn[hl.head]
        # direct renormalisation: a'_ij = a_ij / (1 - a_i0), column 0 dropped; row 0 (all mass on key 0) is 0
        ref = a.copy()
        ref[:, 0] = 0
        rest = 1 - a[:, 0]
        ref = np.where(rest[:, None] > 1e-12, ref / np.where(rest > 1e-12, rest, 1)[:, None], 0)
        np.testing.assert_allclose(model.matrices[hl.head], ref, atol=1e-12)
        drawn = ref >= 0.01
        assert set(zip(hl.query.tolist(), hl.key.tolist())) == set(zip(*np.nonzero(drawn)))
        assert (hl.key != 0).all() and hl.color == colors[hl.head]
        assert (np.triu(np.ones((n, n)), 1)[hl.query, hl.key] == 0).all()  # causal: no line to a later key
    assert sum(len(h.weight) for h in model.heads) == len(model.rows())
    # focus on query 6: only its lines, in every head
    fm = sentence_lines(words, attn, hidden=[0], focus=("query", 6), colors=colors)
    for hl in fm.heads:
        assert (hl.query == 6).all() and len(hl.query) == (model.matrices[hl.head][6] >= 0.01).sum()
    km = sentence_lines(words, attn, focus=("key", 2), min_weight=0.0)
    for hl in km.heads:
        assert (hl.key == 2).all() and len(hl.key) == (attn[hl.head][:, 2] > 0).sum()


def test_below_threshold_is_reported_not_dropped_silently():
    a = np.array([[0.995, 0.005], [0.5, 0.5]])
    model = sentence_lines(["x", "y"], {0: a})
    assert model.heads[0].below == 1
    assert below_note(model) == "3 lines drawn; 1 lines under weight 0.01 not drawn (their weights sum to 0.005)"
    assert below_note(sentence_lines(["x", "y"], {0: np.eye(2)})) == ""


def test_head_colours_are_distinct_for_every_head():
    for n in (1, 9, 12, 16, 20, 32):
        cols = [head_color(i, n) for i in range(n)]
        assert len(set(cols)) == n


# ---------------------------------------------------------------- figures
def _segments_of(fig):
    """(trace colour, query y, key y) for every line segment drawn."""
    out = []
    for t in fig.data:
        if t.mode != "lines" or t.x is None or len(t.x) < 3:
            continue
        y = np.asarray(t.y, float)
        for i in range(0, len(y), 3):
            out.append((t.line.color, int(-y[i]), int(-y[i + 1])))
    return out


def test_single_head_figure_is_the_classic_head_view():
    n = 7
    a = _rand_attention(n, 3)
    fig = sentence_lines_figure([f"t{i}" for i in range(n)], a, (), None, "L0 H0")
    segs = _segments_of(fig)
    assert {(q, k) for _, q, k in segs} == set(zip(*np.nonzero(a >= 0.01)))
    assert all(c.startswith("rgba(31,119,180,") for c, _, _ in segs)  # HEAD_LINE, as before
    assert HEAD_LINE.startswith("rgba(31,119,180,")
    assert [t.name for t in fig.data[-2:]] == ["queries", "keys"] and not fig.layout.showlegend
    assert list(fig.data[-2].customdata[:, 0]) == list(range(n))
    # opacity grows with the weight
    w = {(q, k): a[q, k] for q, k in zip(*np.nonzero(a >= 0.01))}
    alpha = {(q, k): float(c.rsplit(",", 1)[1].rstrip(")")) for c, q, k in segs}
    lo, hi = min(w, key=w.get), max(w, key=w.get)
    assert alpha[lo] < alpha[hi]


def test_several_heads_figure_one_colour_per_head_with_legend():
    n = 6
    words = [f"t{i}" for i in range(n)]
    attn = {h: _rand_attention(n, 20 + h) for h in (1, 4)}
    colors = head_colors([1, 4], list(range(12)))
    model = sentence_lines(words, attn, colors=colors)
    fig = sentence_figure(model, "L0 H1, 4")
    legend = [t.name for t in fig.data if t.showlegend is not False and t.mode == "lines" and t.x == (None,)]
    assert legend == ["H1", "H4"] and fig.layout.showlegend
    by_head = {}
    for c, q, k in _segments_of(fig):
        rgb = c[len("rgba("):].rsplit(",", 1)[0]
        by_head.setdefault(rgb, set()).add((q, k))
    for h in (1, 4):
        hexc = colors[h].lstrip("#")
        rgb = ",".join(str(int(hexc[i:i + 2], 16)) for i in (0, 2, 4))
        assert by_head[rgb] == set(zip(*np.nonzero(attn[h] >= 0.01)))


def test_aggregate_heatmap_ticks_once_and_title_above_the_axis_title():
    pos = [str(i) for i in range(5)]
    fig = attention_heatmap(pos, pos, np.eye(5), "aggregate", label_positions=False,
                            axis_titles=("query position", "key position"))
    assert list(fig.data[0].x) == pos and list(fig.data[0].y) == pos  # not "0 0", "1 1"
    assert fig.layout.title.yref == "container" and fig.layout.title.yanchor == "top"
    assert fig.layout.margin.t >= 80 and fig.layout.xaxis.title.text == "key position"
    words = attention_heatmap(["a", "b"], ["a", "b"], np.eye(2))
    assert list(words.data[0].x) == ["0\u2009a", "1\u2009b"]


# ---------------------------------------------------------------- colour by sentence length
def test_sentence_length_colour_scheme():
    assert TEXT_SCHEMES["input_length"] == "sentence length"
    lengths = [3, 3, 3, 5, 5, 5, 5, 5, 8, 8, 8, 8, 8, 8, 8, 8]
    toks = {"text": np.array(["x"] * 16), "input_length": np.array(lengths, np.int32),
            "position": np.zeros(16, np.int32), "input_id": np.zeros(16, np.int32)}
    idx = np.array([0, 3, 8, 15])
    spec = color_spec("input_length", toks, idx)
    assert spec.values.dtype == np.uint8 and len(spec.values) == 8
    expect = np.rint((np.array([3, 5, 8, 8]) - 3) / 5 * 254 + 1).astype(np.uint8)
    assert list(spec.values) == list(expect) * 2  # queries and keys of a token share its input's length
    assert spec.values[0] == 1 and spec.values[2] == 255  # the run's shortest / longest input at the ends
    assert spec.legend["lo"] == "3 tokens" and spec.legend["hi"].startswith("8 tokens")
    # the same token gets the same colour in any subset (the run's range, not the subset's)
    assert color_spec("input_length", toks, np.array([3])).values[0] == expect[1]


# ---------------------------------------------------------------- CSV export of what the view draws
def test_sentence_csv_of_several_heads(tmp_path):
    from callbacks.export import csv_export
    from attention_atlas.dashboard_data import Data
    from figures.export import csv_columns
    from tests.store_fixture import make_test_store
    from tests.helpers import state
    make_test_store(tmp_path, "text", n_layers=2, n_heads=4, n_inputs=4, run_id="text-run")
    data = Data(tmp_path)
    tokens = data.tokens("text-run")
    rows = tokens.index.rows(2)
    n = len(rows)
    text, name, _ = csv_export(data, "sentence", state(layer=1, head=1, token=int(rows[0]), sheads=[3, 0],
                                                       hide=["cls"]))
    assert name == "text-run_sentence_L1_H0-1-3_input2.csv"
    comments, cols = csv_columns(text)
    assert any(c.startswith("L1 H0, 1, 3 · input 2") for c in comments)
    heads = np.array([int(h) for h in cols["head"]])
    assert list(np.unique(heads)) == [0, 1, 3] and len(heads) == 3 * n * n
    m = data.manifest("text-run")
    for h in (0, 1, 3):
        q, k = data.qk("text-run", 1, h)
        a = attention(q[rows], k[rows], float(m["model"]["scale"]), False)
        w = np.array([float(x) for x, hh in zip(cols["weight"], heads) if hh == h]).reshape(n, n)
        np.testing.assert_allclose(w, hide_and(a, [0]), atol=1e-12)  # [CLS] (position 0) hidden, renormalised


def hide_and(a, hidden):
    from figures.attention import hide_and_renormalise
    return hide_and_renormalise(a, hidden)


def test_several_heads_weighted_by_value_norms(tmp_path):
    """'weight by value norm' weights every drawn head by its own ‖v‖ (stored norms)."""
    values = pytest.importorskip("analysis.values")
    from analysis.values import STORED_NAME, stored_entry
    from callbacks.detail import sentence_view
    from attention_atlas.dashboard_data import Data
    from figures.attention import value_weighted
    from precompute.store import Store
    from tests.store_fixture import make_test_store
    make_test_store(tmp_path, "text", n_layers=2, n_heads=3, n_inputs=4, run_id="v", seed=9)
    st = Store(tmp_path)
    n_tok = len(st.tokens("v")["text"])
    rng = np.random.default_rng(4)
    st.put_analysis("v", STORED_NAME, stored_entry({l: rng.uniform(0.2, 3.0, (3, n_tok)).astype(np.float32)
                                                   for l in range(2)}))
    st.close()
    data = Data(tmp_path)
    tokens, m = data.tokens("v"), data.manifest("v")
    rows = tokens.index.rows(1)
    fig, info = sentence_view(data, "v", 1, 2, int(rows[0]), None, [], "lines", True, [0], "all")
    assert "weighted by value norms" in info and "weighted by ‖v‖" in fig.layout.title.text
    colors = head_colors([0, 2], m["heads"])
    drawn = {}
    for t in fig.data:
        if t.mode == "lines" and t.x is not None and len(t.x) >= 3:
            y = np.asarray(t.y, float)
            drawn.setdefault(t.legendgroup, set()).update((int(-y[i]), int(-y[i + 1])) for i in range(0, len(y), 3))
    vn_all = values.input_value_norms(m, Store(tmp_path, readonly=True), 1, [1], rows)[1]
    for h in (0, 2):
        q, k = data.qk("v", 1, h)
        a = value_weighted(attention(q[rows], k[rows], float(m["model"]["scale"]), False), vn_all[h])
        assert drawn[f"h{h}"] == set(zip(*np.nonzero(a >= 0.01))), h
        plain = attention(q[rows], k[rows], float(m["model"]["scale"]), False)
        assert set(zip(*np.nonzero(plain >= 0.01))) != drawn[f"h{h}"] or not np.allclose(a, plain)
    assert colors[0] != colors[2]
