"""Global token search: exact (case-insensitive, subword markers stripped) or regex."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .common import normalise_token


@dataclass
class SearchResult:
    mask: np.ndarray | None     # bool per token, None = no search active
    message: str
    error: bool = False

    @property
    def n_tokens(self) -> int:
        return int(self.mask.sum()) if self.mask is not None else 0


def normalised_texts(texts) -> np.ndarray:
    return np.array([normalise_token(t) for t in texts], dtype=object)


def search_tokens(norm_texts: np.ndarray, query: str | None, regex: bool = False) -> SearchResult:
    """Match tokens. ``norm_texts`` comes from :func:`normalised_texts` (cache it per run)."""
    q = (query or "").strip()
    if not q:
        return SearchResult(None, "")
    if regex:
        try:
            pat = re.compile(q, re.IGNORECASE)
        except re.error as exc:
            return SearchResult(None, f"the pattern {q!r} is not a valid regular expression ({exc.msg}"
                                      f"{' at position %d' % exc.pos if exc.pos is not None else ''}): fix it or switch regex off", True)
        mask = np.fromiter((pat.search(t) is not None for t in norm_texts), bool, len(norm_texts))
    else:
        target = normalise_token(q)
        if not target:  # searching for a marker/space only: match the raw form instead
            target = q.lower()
        mask = np.asarray(norm_texts == target, bool)
    n = int(mask.sum())
    if n == 0:
        return SearchResult(mask, f"no token matches {q!r}" + (" (regex)" if regex else ""))
    return SearchResult(mask, f"{n} token{'s' if n != 1 else ''} match {q!r}")
