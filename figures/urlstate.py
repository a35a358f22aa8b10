"""The view state: ONE field table gives every field's URL key, the component (id, property) that
holds it, its default, its type and its choices. The URL parser, the serialiser, the layout's
initial values and the state reducer's control list (callbacks/state.py) all derive from it.

Parsing never raises: bad values fall back to the default and are reported, so a malformed
shared link still opens a working view."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

# Matrix View orders: grid, |ρ|, each head-pattern score, stored ablation effects
# (= analysis.head_scores.SORT_SCORES; kept literal so parsing a link imports no analysis code)
SORTS = ("grid", "rho", "first", "sep", "prev", "next", "self", "broad", "positional", "ablation-zero", "ablation-mean")
PROJECTIONS = ("pca", "tsne", "umap", "attn-umap", "attn-tsne")
# ... plus ``fig:<id>``: ranked and shaded by a faithfulness figure, ``<id>`` as
# analysis.faithfulness.figure_catalogue names it (kept literal here for the same reason)
FIGURE_SORT = re.compile(r"fig:(picture-shown|trust-shown|trust-fit-shown|joint-cosine|joint-euclidean"
                         r"|(picture|trust|trust-euclidean):(" + "|".join(map(re.escape, PROJECTIONS)) + r"):[23])")


@dataclass(frozen=True)
class Field:
    key: str                 # URL key
    component: str           # component id
    prop: str                # component property
    default: Any
    kind: str                # str | choice | order | int | nonneg | float01 | toggle | token | csv | lod
    choices: tuple = ()

    # ------------------------------------------------------------------ URL
    def parse(self, raw: str):
        """URL text -> value; ValueError when it is not a valid value."""
        k = self.kind
        if k == "toggle":
            s = raw.strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if k == "lod":
            val = "auto" if raw.strip().lower() == "auto" else int(raw)
        elif k in ("int", "nonneg", "token"):
            val = int(raw)
            if k in ("nonneg", "token") and val < 0:
                raise ValueError(raw)
        elif k == "choice" and isinstance(self.default, int):
            val = int(raw)
        elif k == "float01":
            val = float(raw)
            if not 0.0 <= val <= 1.0:
                raise ValueError(raw)
        else:
            val = raw
        if self.choices and val not in self.choices and not (k == "order" and FIGURE_SORT.fullmatch(str(val))):
            raise ValueError(raw)
        return val

    # ------------------------------------------------------------------ component
    def to_control(self, value):
        """State value -> component property value."""
        if self.kind == "toggle":
            return ["on"] if value else []
        if self.kind == "csv":
            return [x for x in str(value).split(",") if x] if value else []
        return value

    def from_control(self, value):
        """Component property value -> state value."""
        k = self.kind
        if k == "toggle":
            return bool(value) and "on" in value
        if k == "csv":
            return ",".join(sorted(value or []))
        if k == "str" and self.default == "":
            return value or ""
        if k == "float01":
            return float(value or 0) if self.default == 0.0 else (float(value) if value not in (None, "") else self.default)
        if k in ("nonneg", "int") and self.component.endswith("-input"):
            return int(value) if value not in (None, "") else self.default
        if k == "choice" and isinstance(self.default, int):
            return int(value) if value is not None else self.default
        return value


FIELDS: tuple[Field, ...] = (
    Field("run", "run-select", "value", None, "str"),
    Field("proj", "projection-select", "value", "tsne", "choice", PROJECTIONS),
    Field("dim", "dim-select", "value", 2, "choice", (2, 3)),
    Field("translate", "translate-toggle", "value", True, "toggle"),
    Field("scaled", "scaled-toggle", "value", False, "toggle"),
    Field("color", "color-select", "value", "qk", "str"),
    Field("q", "search-input", "value", "", "str"),
    Field("regex", "regex-toggle", "value", False, "toggle"),
    Field("layer", "layer-select", "value", 0, "nonneg"),
    Field("head", "head-select", "value", 0, "nonneg"),
    Field("lod", "lod-select", "value", "auto", "lod", ("auto", 250, 500, 1000, 3000, 0)),
    Field("sort", "sort-select", "value", "grid", "order", SORTS),  # a choice, or fig:<figure id>
    Field("rho", "rho-threshold", "value", 0.0, "float01"),
    Field("topk", "topk-input", "value", 2, "nonneg"),
    Field("minw", "minw-input", "value", 0.05, "float01"),
    Field("lines", "lines-toggle", "value", True, "toggle"),
    Field("normsize", "normsize-toggle", "value", False, "toggle"),
    Field("tab", "detail-tab", "value", "sentence", "choice", ("sentence", "image", "model")),
    Field("smode", "sentence-mode", "value", "auto", "choice", ("auto", "lines", "heatmap", "aggregate")),
    Field("hide", "hide-select", "value", "", "csv"),
    Field("imode", "image-mode", "value", "heatmap", "choice", ("heatmap", "arrows")),
    Field("atab", "analysis-tab", "value", "patterns", "choice",
          ("patterns", "related", "ablation", "neuron", "rollout", "input", "precompute")),
    Field("vnorm", "vnorm-toggle", "value", False, "toggle"),
    Field("token", "token-store", "data", None, "token"),
    # Sentence View: extra heads drawn beside the current one (head numbers as strings), sentence A/B filter
    Field("sheads", "sentence-heads", "value", "", "csv"),
    Field("pair", "sentence-pair", "value", "all", "choice", ("all", "ab", "ba", "aa", "bb")),
    # encoder–decoder runs: the Matrix View's grid of one head kind (the control is shown only for them)
    Field("kind", "kind-select", "value", "auto", "choice", ("auto", "encoder", "decoder", "cross")),
)
FIELD = {f.key: f for f in FIELDS}
DEFAULTS = {f.key: f.default for f in FIELDS}
CHOICES = {f.key: set(f.choices) for f in FIELDS if f.choices}


def parse(search: str | None) -> tuple[dict, list[str]]:
    """Query string -> (full state, problems). Unknown keys are ignored silently."""
    state = dict(DEFAULTS)
    problems = []
    s = (search or "").lstrip("?")
    try:
        pairs = parse_qsl(s, keep_blank_values=True)
    except (ValueError, TypeError):  # anything odd in the URL (UnicodeError is a ValueError) is just ignored
        return state, ["the link's parameters could not be read; showing the default view"]
    for key, raw in pairs:
        f = FIELD.get(key)
        if f is None:
            continue
        try:
            state[key] = f.parse(raw)
        except (ValueError, TypeError):
            problems.append(f"ignored {key}={raw!r} in the link (not a valid value)")
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
