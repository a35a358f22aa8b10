"""Helpers shared by more than one test directory (tests/unit, tests/integration, tests/browser).

- ``state``: the dashboard's view state (what the callbacks get from the URL) with the defaults of
  the synthetic store of tests/store_fixture.py, for the CSV/HTML exports;
- ``direct_spearman``: the loop reference of the faithfulness figures;
- tiny seeded random models saved as local folders (no download), with a byte-level BPE tokenizer
  trained on ``TEXTS`` or the packaged MiniLM's WordPiece tokenizer.
"""
from __future__ import annotations

import numpy as np

TEXT = "text-run"  # the run id the synthetic stores of the tests use for their text run


def state(**kw):
    s = dict(run=TEXT, layer=1, head=2, proj="pca", dim=2, translate=["on"], scaled=[], lod=250, sort="grid", rho=0,
             query="", regex=[], token=None, all=[], smode="auto", hide=[], imode="heatmap", vnorm=[])
    s.update(kw)
    return s


# ---------------------------------------------------------------------------- faithfulness figures
def direct_spearman(q, k, idx, causal, scale, dist):
    """Loop reference: per query over its own input's attendable keys, scipy Spearman of
    dist(i, j) against attention; mean per input, then over inputs."""
    from scipy.stats import spearmanr

    from precompute.metrics import attention_from_qk

    per = []
    for u in np.unique(idx):
        rows = np.nonzero(idx == u)[0]
        A = attention_from_qk(q[rows], k[rows], causal, scale)
        vals = []
        for i in range(len(rows)):
            m = i + 1 if causal else len(rows)
            if m < 3:
                continue
            d = [dist(rows[i], rows[j]) for j in range(m)]
            r = spearmanr(d, A[i, :m]).statistic
            if np.isfinite(r):
                vals.append(r)
        if vals:
            per.append(np.mean(vals))
    return np.mean(per)


# ---------------------------------------------------------------------------- tiny random models
TEXTS = [
    "The cat sat on the mat because it was warm.",
    "Hi!",
    "Alice gave Bob the book, and he thanked her twice: once at noon and again at 5 pm.",
]


def byte_bpe_tokenizer(folder, specials=("<s>", "<pad>", "</s>", "<unk>")):
    """A tiny byte-level BPE tokenizer trained on the test sentences, saved into ``folder``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 3 + ["the quick brown fox jumps over the lazy dog"], vocab_size=300,
                            special_tokens=list(specials))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", unk_token="<unk>", model_max_length=128)
    tok.save_pretrained(folder)


def save_random(model_cls, config, folder, tokenizer_folder_fn):
    """Save a seeded random model plus a tokenizer into ``folder`` (the user-folder path)."""
    import torch

    torch.manual_seed(0)
    model_cls(config).save_pretrained(folder)
    tokenizer_folder_fn(folder)
    return str(folder)


def minilm_tokenizer(folder):
    from transformers import AutoTokenizer

    from precompute.models.packaged import builtin_folder

    AutoTokenizer.from_pretrained(str(builtin_folder("minilm")[0])).save_pretrained(folder)


def save_tiny(model_cls, config, folder, text=True) -> str:
    """A seeded random model with sharpened attention (tiny inits make it nearly uniform), plus the
    byte-level BPE tokenizer for text models."""
    import torch

    torch.manual_seed(0)
    model = model_cls(config)
    with torch.no_grad():                 # sharpen attention: tiny inits make it nearly uniform
        for name, p in model.named_parameters():
            if p.dim() == 2 and any(s in name for s in ("q_proj", "k_proj", "query", "key", "q_lin", "k_lin",
                                                        "c_attn", "query_key_value", "Wqkv")):
                p.mul_(3.0)
    model.save_pretrained(folder)
    if text:
        byte_bpe_tokenizer(folder)
    return str(folder)


def seq2seq_specs():
    """The tiny encoder–decoder architectures: name → (model class, config)."""
    import transformers as t

    common = dict(vocab_size=300, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                  init_std=0.2, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    return {
        "bart": (t.BartForConditionalGeneration, t.BartConfig(**common)),
        "mbart": (t.MBartForConditionalGeneration, t.MBartConfig(**common)),
        "marian": (t.MarianMTModel, t.MarianConfig(**dict(common, decoder_start_token_id=1, decoder_vocab_size=300))),
        # T5 family: a learned relative-position bias per head (buckets saturate at max_distance = 12,
        # shorter than the longest input, so offsets beyond it are exercised)
        "t5": (t.T5ForConditionalGeneration, t.T5Config(**T5_COMMON)),
        "mt5": (t.MT5ForConditionalGeneration, t.MT5Config(**T5_COMMON)),
        "umt5": (t.UMT5ForConditionalGeneration, t.UMT5Config(**T5_COMMON)),     # a bias table per layer
    }


T5_COMMON = dict(vocab_size=300, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                 relative_attention_num_buckets=8, relative_attention_max_distance=12, pad_token_id=1,
                 eos_token_id=2, decoder_start_token_id=1)
