"""Sentence pairs (BertViz's sentence_b): a .tsv corpus or two text columns, encoded by the
tokenizer as a pair, with the segment ids passed to the model; the Sentence View's segments."""
from __future__ import annotations

import json

import numpy as np
import pytest

from precompute.corpus import CorpusError, _hash_texts, load_corpus

PAIRS = [("The cat sat on the mat.", "It was tired."),
         ("Where is the station?", "The train leaves at noon and it is late."),
         ("She said yes.", "Then she changed her mind about the offer.")]


# ---------------------------------------------------------------- corpus
def test_tsv_pairs_and_single_texts(tmp_path):
    p = tmp_path / "pairs.tsv"
    p.write_text("The cat sat.\tIt was tired.\n\nJust one sentence.\n\tno first sentence\nA.\t  \n", encoding="utf-8")
    c = load_corpus(str(p))
    assert c.kind == "text" and c.items == [("The cat sat.", "It was tired."), "Just one sentence.", "A."]
    assert c.labels[0] == "The cat sat. ‖ It was tired."
    assert c.skipped == 1 and "line 4" in c.warnings[0]
    bad = tmp_path / "three.tsv"
    bad.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="line 1 has 3 tab-separated fields"):
        load_corpus(str(bad))


def test_csv_and_jsonl_pairs_from_two_columns(tmp_path):
    p = tmp_path / "pairs.csv"
    p.write_text('premise,hypothesis,label\n"A man, walking.",He moves.,1\nAlone here.,,0\n', encoding="utf-8")
    c = load_corpus(str(p), text_column="premise,hypothesis")
    assert c.items == [("A man, walking.", "He moves."), "Alone here."]
    with pytest.raises(CorpusError, match="no column 'nope'"):
        load_corpus(str(p), text_column="premise,nope")
    # a header that really is called "a,b" stays one column
    q = tmp_path / "odd.csv"
    q.write_text('"a,b",c\nhello,x\n', encoding="utf-8")
    assert load_corpus(str(q), text_column="a,b").items == ["hello"]
    j = tmp_path / "pairs.jsonl"
    j.write_text("\n".join(json.dumps({"a": a, "b": b}) for a, b in PAIRS), encoding="utf-8")
    assert load_corpus(str(j), text_column="a,b").items == PAIRS


def test_plain_text_hash_unchanged_and_pairs_hash_apart():
    import hashlib
    import struct
    h = hashlib.sha256(b"attention-atlas corpus v1\0text\0")
    for t in ["one", "two"]:
        h.update(struct.pack("<Q", len(t.encode())))
        h.update(t.encode())
    assert _hash_texts(["one", "two"]) == h.hexdigest()  # existing runs keep their corpus hash
    assert _hash_texts([("one", "two")]) != _hash_texts(["one", "two"]) != _hash_texts(["one two"])
    assert _hash_texts([["one", "two"]]) == _hash_texts([("one", "two")])  # JSON round trip


# ---------------------------------------------------------------- model: encoded as a pair, faithfully
# minilm: the session's packaged adapter (tests/integration/conftest.py)


def test_minilm_encodes_a_pair_like_its_tokenizer(minilm):
    tok = minilm.tokenizer
    enc = minilm.encode_texts([PAIRS[0], list(PAIRS[1]), "A single text."])
    ref = tok(*PAIRS[0])
    assert enc[0].token_ids == ref["input_ids"] and enc[0].token_type_ids == ref["token_type_ids"]
    assert enc[0].tokens[0] == "[CLS]" and enc[0].tokens.count("[SEP]") == 2
    assert enc[1].token_type_ids == tok(*PAIRS[1])["token_type_ids"]  # a stored (JSON list) pair too
    assert enc[2].token_type_ids is None
    with pytest.raises(ValueError, match="neither a text nor a sentence pair"):
        minilm.encode_texts([("a", "b", "c")])


def test_pair_attention_is_the_models_own_with_segment_ids(minilm):
    """Recomputed attention from the captured q/k equals the HF model run on tokenizer(a, b) —
    token_type_ids included — and differs from running it without them (so they are passed)."""
    import torch

    from tests.integration.helpers import recompute
    batch = minilm.encode_texts([PAIRS[1], PAIRS[2], "A single text of some length here."])
    captured = minilm.capture(batch)
    info = minilm.info
    for i, (a, b) in enumerate(PAIRS[1:]):
        inputs = minilm.tokenizer(a, b, return_tensors="pt")
        with torch.inference_mode():
            out = minilm.model.base_model(**inputs, output_attentions=True)
            flat = minilm.model.base_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                           output_attentions=True)
        worst = 0.0
        for layer in range(info.n_layers):
            q, k = captured[layer][0][i], captured[layer][1][i]
            mine = recompute(q, k, info.scale, info.causal)
            worst = max(worst, float(np.abs(mine - out.attentions[layer][0].numpy()).max()))
        assert worst < 1e-4, worst
        last = info.n_layers - 1
        mine = recompute(captured[last][0][i], captured[last][1][i], info.scale, False)
        assert np.abs(mine - flat.attentions[last][0].numpy()).max() > 1e-3  # segment ids matter


def test_pipeline_run_on_a_pair_corpus(tmp_path):
    """A .tsv pair corpus through the real pipeline: stored inputs are pairs, stored tokens are the
    pair encoding, and the Sentence View's segments are the tokenizer's token_type_ids."""
    from figures.sentence import segments, token_roles
    from precompute.pipeline import RunConfig, run
    from precompute.store import Store
    corpus = tmp_path / "pairs.tsv"
    corpus.write_text("\n".join(f"{a}\t{b}" for a, b in PAIRS) + "\nNo pair here.\n", encoding="utf-8")
    s = run(RunConfig(model="minilm", corpus=str(corpus), cache=str(tmp_path / "store"), variants="translated",
                      workers=1, layers="0", projections="pca", dims="2"))
    assert s.status["status"] == "complete"
    st = Store(tmp_path / "store", readonly=True)
    m, toks, inputs = st.manifest(s.run_id), st.tokens(s.run_id), st.inputs(s.run_id)
    assert inputs[:3] == [list(p) for p in PAIRS] and inputs[3] == "No pair here."
    roles = token_roles(m["model"]["special_tokens"], toks["text"], toks["position"])
    from precompute.models.hf import load_tokenizer
    from precompute.models.packaged import builtin_folder
    tok = load_tokenizer(str(builtin_folder("minilm")[0]))
    for i, item in enumerate(inputs):
        words = [str(t) for t in np.asarray(toks["text"])[np.asarray(toks["input_id"]) == i]]
        seg = segments(words, roles)
        if isinstance(item, list):
            assert list(seg) == tok(*item)["token_type_ids"]
        else:
            assert seg is None

    # the CSV export of the Sentence View with the A → B filter: exactly the cross-sentence block
    from callbacks.export import csv_export
    from attention_atlas.dashboard_data import Data
    from figures.attention import attention
    from figures.export import csv_columns
    from tests.helpers import state
    data = Data(tmp_path / "store")
    rows = np.flatnonzero(np.asarray(toks["input_id"]) == 0)
    words = [str(t) for t in np.asarray(toks["text"])[rows]]
    seg = segments(words, roles)
    text, _, _ = csv_export(data, "sentence", state(run=s.run_id, layer=0, head=2, token=int(rows[0]), pair="ab"))
    comments, cols = csv_columns(text)
    assert any("A → B" in c for c in comments)
    qp, kp = np.array([int(x) for x in cols["query_pos"]]), np.array([int(x) for x in cols["key_pos"]])
    assert set(qp) == set(np.flatnonzero(seg == 0)) and set(kp) == set(np.flatnonzero(seg == 1))
    q, k = st.qk(s.run_id, 0, 2)
    a = attention(q[rows], k[rows], float(m["model"]["scale"]), False)
    np.testing.assert_allclose([float(w) for w in cols["weight"]], a[qp, kp], atol=1e-6)
