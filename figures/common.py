"""Small helpers shared by the figure builders (token text, input index, typed arrays)."""
from __future__ import annotations

import base64
import re
import string

import numpy as np

from attention_atlas.core.tokens import InputIndex  # noqa: F401 - moved to the shared core, imported from here too

QUERY_GREEN = "#1a9850"
KEY_PINK = "#e7298a"
_MARKERS = ("##", "\u0120", "\u2581", "\u010a")  # WordPiece, GPT-2 BPE space, SentencePiece, BPE newline
_PUNCT = set(string.punctuation) | set("\u2018\u2019\u201c\u201d\u2013\u2014\u2026")


def normalise_token(text: str) -> str:
    """Token text for matching/display: subword markers stripped, lower-cased."""
    t = str(text)
    for m in _MARKERS:
        t = t.replace(m, "")
    return t.strip().lower()


def display_token(text: str) -> str:
    t = str(text).replace("\u0120", " ").replace("\u2581", " ").replace("\u010a", "\\n")
    return t if t.strip() else repr(t)


def is_punct_or_special(text: str, specials=("[CLS]", "[SEP]", "<s>", "</s>", "<|endoftext|>", "[PAD]")) -> bool:
    if str(text) in specials:
        return True
    stripped = "".join(ch for ch in normalise_token(text) if ch not in _PUNCT)
    return stripped == ""


def typed(arr: np.ndarray) -> dict:
    """A numpy array as Plotly's base64 typed-array spec (what plotly.io emits for arrays)."""
    arr = np.ascontiguousarray(arr)
    codes = {"float64": "f8", "float32": "f4", "int32": "i4", "uint32": "u4", "int16": "i2",
             "uint16": "u2", "int8": "i1", "uint8": "u1"}
    out = {"dtype": codes[str(arr.dtype)], "bdata": base64.b64encode(arr.tobytes()).decode()}
    if arr.ndim > 1:
        out["shape"] = ",".join(str(s) for s in arr.shape)
    return out


def context_string(words: list[str], index: int, width: int = 6, max_chars: int = 70) -> str:
    """«…the [cat] sat…»: the token marked inside its input, truncated around it."""
    lo, hi = max(0, index - width), min(len(words), index + width + 1)
    left = " ".join(words[lo:index])
    right = " ".join(words[index + 1:hi])
    half = max(8, (max_chars - len(words[index])) // 2)
    if len(left) > half:
        left, lo = left[-half:], 1
    if len(right) > half:
        right, hi = right[:half], len(words) - 1
    s = (("…" if lo > 0 else "") + left + (" " if left else "") + f"[{words[index]}]"
         + (" " if right else "") + right + ("…" if hi < len(words) else ""))
    return "«" + s + "»"


_HTML_ESC = re.compile(r"[<>&]")


def html_escape(s: str) -> str:
    return _HTML_ESC.sub(lambda m: {"<": "&lt;", ">": "&gt;", "&": "&amp;"}[m.group()], s)
