"""The view state <-> URL query string. Parsing never raises: bad values fall back to the
default and are reported, so a malformed shared link still opens a working view."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

DEFAULTS = {
    "run": None, "proj": "tsne", "dim": 2, "translate": True, "scaled": False, "color": "qk",
    "q": "", "regex": False, "layer": 0, "head": 0, "token": None, "lod": "auto",
    "sort": "grid", "rho": 0.0, "topk": 2, "minw": 0.05, "lines": True, "normsize": False,
    "tab": "sentence", "smode": "auto", "hide": "", "imode": "heatmap", "atab": "patterns", "vnorm": False,
}
CHOICES = {
    "proj": {"pca", "tsne", "umap"}, "dim": {2, 3}, "lod": {"auto", 250, 500, 1000, 3000, 0},
    # Matrix View order: grid, |ρ|, each head-pattern score, stored ablation effects
    # (= analysis.head_scores.SORT_SCORES; kept literal so parsing a link imports no analysis code)
    "sort": {"grid", "rho", "first", "sep", "prev", "next", "self", "broad", "positional", "ablation-zero",
             "ablation-mean"},
    "tab": {"sentence", "image", "model"}, "smode": {"auto", "lines", "heatmap", "aggregate"},
    "imode": {"heatmap", "arrows"},
    "atab": {"patterns", "related", "ablation", "neuron", "rollout", "input", "precompute"},
}
BOOLS = {"translate", "scaled", "regex", "lines", "normsize", "vnorm"}
INTS = {"dim", "layer", "head", "topk"}
INT_OR_WORD = {"lod": "auto"}  # an int, or this word
FLOATS = {"rho", "minw"}
OPTIONAL_INTS = {"token"}


def _bool(v: str) -> bool:
    s = v.strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(v)


def parse(search: str | None) -> tuple[dict, list[str]]:
    """Query string -> (full state, problems). Unknown keys are ignored silently."""
    state = dict(DEFAULTS)
    problems = []
    s = (search or "").lstrip("?")
    try:
        pairs = parse_qsl(s, keep_blank_values=True)
    except Exception:  # noqa: BLE001 - anything odd in the URL is just ignored
        return state, ["the link's parameters could not be read; showing the default view"]
    for key, raw in pairs:
        if key not in DEFAULTS:
            continue
        try:
            if key in BOOLS:
                val = _bool(raw)
            elif key in INT_OR_WORD:
                val = raw.strip().lower() if raw.strip().lower() == INT_OR_WORD[key] else int(raw)
            elif key in INTS or key in OPTIONAL_INTS:
                val = int(raw)
                if key in ("layer", "head", "topk", "token") and val < 0:
                    raise ValueError(raw)
            elif key in FLOATS:
                val = float(raw)
                if not 0.0 <= val <= 1.0:
                    raise ValueError(raw)
            else:
                val = raw
            if key in CHOICES and val not in CHOICES[key]:
                raise ValueError(raw)
        except (ValueError, TypeError):
            problems.append(f"ignored {key}={raw!r} in the link (not a valid value)")
            continue
        state[key] = val
    return state, problems


def serialise(state: dict) -> str:
    """State -> '?k=v&…' with only the values that differ from the defaults."""
    out = []
    for key, default in DEFAULTS.items():
        val = state.get(key, default)
        if val is None or val == default:
            continue
        if isinstance(val, bool):
            val = "1" if val else "0"
        out.append((key, str(val)))
    return ("?" + urlencode(out)) if out else ""
