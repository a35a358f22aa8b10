"""Global token search: exact (case-insensitive, subword markers stripped) or regex.

Regular expressions come from users (the search box, a shared link, the preview route), so they
are compiled by RE2 (``google-re2``): matching is linear in the text, whatever the pattern — no
catastrophic backtracking (``(.|.|.|.|.|.|.)*!`` is as quick as ``cat``). Constructs RE2 cannot
run in linear time (backreferences, lookaround) are refused with a one-line message. On top of
that every search is bounded: the pattern's length, RE2's memory for the compiled program, and
the time spent matching (``SEARCH_SECONDS``, checked while matching; a search that runs out says
so instead of holding a web worker).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import re2

from .common import normalise_token

MAX_PATTERN = 500            # characters of a regex
MAX_PROGRAM_BYTES = 8 << 20  # RE2 memory budget for one compiled pattern
SEARCH_SECONDS = 2.0         # time budget of one search over a run's tokens
_CHUNK = 256                 # distinct tokens matched between two clock checks


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


def _reason(exc: Exception) -> str:
    msg = exc.args[0] if exc.args else str(exc)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg).split(":")[0].strip() or "invalid pattern"


def compile_user_regex(q: str):
    """A linear-time compiled pattern (case-insensitive), or a one-line message naming the fix."""
    if len(q) > MAX_PATTERN:
        return None, f"the pattern is {len(q)} characters long (limit {MAX_PATTERN}): shorten it or switch regex off"
    opts = re2.Options()
    opts.case_sensitive = False
    opts.log_errors = False
    opts.max_mem = MAX_PROGRAM_BYTES
    try:
        return re2.compile(q, opts), ""
    except re2.error as exc:
        why = _reason(exc)
        hint = (" (backreferences and lookahead/lookbehind are not supported: search is linear-time)"
                if any(s in q for s in ("(?=", "(?!", "(?<=", "(?<!")) or any(f"\\{d}" in q for d in "123456789")
                else "")
        if "too big" in why or "pattern too large" in why:
            return None, f"the pattern {q[:60]!r} is too large to search with: simplify it or switch regex off"
        return None, f"the pattern {q[:80]!r} is not a valid regular expression ({why}){hint}: fix it or switch regex off"


def search_tokens(norm_texts: np.ndarray, query: str | None, regex: bool = False,
                  budget: float = SEARCH_SECONDS) -> SearchResult:
    """Match tokens. ``norm_texts`` comes from :func:`normalised_texts` (cache it per run)."""
    q = (query or "").strip()
    if not q:
        return SearchResult(None, "")
    if regex:
        pat, problem = compile_user_regex(q)
        if pat is None:
            return SearchResult(None, problem, True)
        # distinct token texts only (a corpus repeats its tokens), matched against a deadline
        index: dict[str, int] = {}
        inverse = np.fromiter((index.setdefault(str(t), len(index)) for t in norm_texts), np.int64, len(norm_texts))
        uniq = list(index)
        hit = np.zeros(len(uniq), bool)
        deadline = time.monotonic() + budget
        for start in range(0, len(uniq), _CHUNK):
            if time.monotonic() > deadline:
                return SearchResult(None, f"the search for {q[:60]!r} took longer than {budget:g} s and was stopped: "
                                          "use a simpler pattern", True)
            for i in range(start, min(start + _CHUNK, len(uniq))):
                hit[i] = pat.search(uniq[i]) is not None
        mask = hit[inverse]
    else:
        target = normalise_token(q)
        if not target:  # searching for a marker/space only: match the raw form instead
            target = q.lower()
        mask = np.asarray(norm_texts == target, bool)
    n = int(mask.sum())
    if n == 0:
        return SearchResult(mask, f"no token matches {q!r}" + (" (regex)" if regex else ""))
    return SearchResult(mask, f"{n} token{'s' if n != 1 else ''} match {q!r}")
