"""Colour schemes. Every scheme maps points (queries of the token subset, then keys) to
small integer codes (uint8) plus a colour scale, so colours travel as one byte a point
and a colour change patches only marker.color / marker.colorscale."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from plotly.colors import hex_to_rgb, sample_colorscale, unlabel_rgb

from .common import KEY_PINK, QUERY_GREEN, is_punct_or_special, normalise_token

TEXT_SCHEMES = {
    "qk": "query / key",
    "norm_position": "normalized position",
    "position_mod5": "discrete position (mod 5)",
    "token_length": "token length",
    "input_length": "sentence length",
    "punctuation": "punctuation",
    "embedding_norm": "embedding norm",
    "frequency": "token frequency",
    "picture_agreement": "picture agreement (top-3 keys)",
}
IMAGE_SCHEMES = {
    "qk": "query / key",
    "patch_row": "patch row",
    "patch_col": "patch column",
    "patch_color": "patch colour",
    "embedding_norm": "embedding norm",
    "picture_agreement": "picture agreement (top-3 keys)",
}
PER_HEAD = {"embedding_norm", "picture_agreement"}  # depends on the head's vectors (and picture)
AGREEMENT_K = 3  # = analysis.faithfulness.DISTORTION_K (the scheme's label states it)

# five hue pairs (light for keys, dark for queries)
MOD5_KEYS = ["#9ecae1", "#fdae6b", "#a1d99b", "#fc9272", "#bcbddc"]
MOD5_QUERIES = ["#08519c", "#a63603", "#006d2c", "#a50f15", "#54278f"]
GREY = "#9a9a9a"


@dataclass
class ColorSpec:
    values: np.ndarray              # uint8, one per point (queries then keys)
    colorscale: list                # plotly colorscale over [0, 255]
    legend: dict = field(default_factory=dict)  # {"items": [(label, colour)]} or {"gradient": [...], "lo":, "hi":}
    cmin: float = 0.0
    cmax: float = 255.0
    colorbar: dict | None = None    # a colour bar for the query points (Single View), Plotly's marker.colorbar
    hover: list | None = None       # per point (queries then keys): text added to the hover label


def discrete_scale(colors: list[str]) -> list:
    """Colorscale over codes 0..255 where code i (i < len(colors)) is exactly colors[i]."""
    n = len(colors)
    scale = []
    for i, c in enumerate(colors):
        lo = (i - 0.5) / 255 if i else 0.0
        hi = min((i + 0.5) / 255, 1.0) if i < n - 1 else 1.0
        scale += [[max(lo, 0.0), c], [hi, c]]
    return scale


def ramp(colors: list[str], n: int = 16) -> list[str]:
    scale = [[i / (len(colors) - 1), c] for i, c in enumerate(colors)]
    return sample_colorscale(scale, list(np.linspace(0, 1, n)), colortype="rgb")


def _continuous(vals: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    v = np.asarray(vals, np.float64)
    lo = float(np.nanmin(v)) if lo is None else lo
    hi = float(np.nanmax(v)) if hi is None else hi
    return np.rint(np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1) * 254 + 1).astype(np.uint8)


VIRIDIS = "Viridis"


def _gradient_scale(name: str = VIRIDIS, grey_zero: bool = True) -> list:
    cols = sample_colorscale(name, list(np.linspace(0, 1, 11)), colortype="rgb")
    scale = [[1 / 255 + i / 10 * (254 / 255), c] for i, c in enumerate(cols)]
    if grey_zero:
        scale = [[0.0, GREY], [0.5 / 255, GREY]] + scale
    else:
        scale = [[0.0, cols[0]]] + scale
    scale[-1][0] = 1.0
    return scale


def token_frequency(texts: np.ndarray) -> np.ndarray:
    norm = np.array([normalise_token(t) for t in texts])
    _, inv, counts = np.unique(norm, return_inverse=True, return_counts=True)
    return counts[inv]


# picture agreement: code 0 keys (not coloured), 1 undefined queries, 2..255 the share 0..1
AGREEMENT_KEY, AGREEMENT_UNDEFINED = "#e3e3e3", "#8c8c8c"
AGREEMENT_RAMP = ["#d7301f", "#fc8d59", "#74add1", "#313695"]  # 0 (the picture lies) .. 1 (it shows what is attended)


def agreement_codes(share: np.ndarray) -> np.ndarray:
    """Colour codes of per-query picture agreement (NaN = undefined → 1; share s → 2 + round(253·s))."""
    v = np.asarray(share, np.float64)
    return np.where(np.isnan(v), 1, 2 + np.rint(np.clip(np.nan_to_num(v), 0, 1) * 253)).astype(np.uint8)


def agreement_share(codes: np.ndarray, k: int = AGREEMENT_K) -> np.ndarray:
    """The inverse of :func:`agreement_codes` for shares that are multiples of 1/k (NaN for code ≤ 1)."""
    c = np.asarray(codes, np.float64)
    return np.where(c <= 1, np.nan, np.rint((c - 2) / 253 * k) / k)


def agreement_scale() -> list:
    cols = AGREEMENT_RAMP
    scale = [[0.0, AGREEMENT_KEY], [0.5 / 255, AGREEMENT_KEY], [0.5 / 255, AGREEMENT_UNDEFINED],
             [1.5 / 255, AGREEMENT_UNDEFINED]]
    scale += [[(2 + i / (len(cols) - 1) * 253) / 255, c] for i, c in enumerate(cols)]
    scale[-1][0] = 1.0
    return scale


def agreement_spec(share: np.ndarray | None, m: int, k: int = AGREEMENT_K, definition: str = "") -> ColorSpec:
    """Queries coloured by picture agreement ``share`` (m values, NaN = undefined; None = not
    available: every query undefined), keys light grey; a colour bar with one tick per possible
    share (0, 1/k, …, 1) and each query's agreement in its hover label."""
    share = np.full(m, np.nan) if share is None else np.asarray(share, np.float64)
    codes = np.r_[agreement_codes(share), np.zeros(m, np.uint8)]
    ticks = [j / k for j in range(k + 1)]
    bar = dict(title=dict(text=f"picture<br>agreement<br>(top-{k})", side="top"), thickness=12, len=0.6,
               tickvals=[2 + t * 253 for t in ticks], ticktext=[f"{j} of {k}" for j in range(k + 1)],
               tickfont=dict(size=10))
    hover = [(" · picture agreement undefined (≤ %d attendable keys)" % k) if np.isnan(v) else
             f" · picture agreement {int(round(v * k))} of {k} (top-{k} attended keys among the {k} nearest)"
             for v in share] + [""] * m
    legend = {"items": [("key (not coloured)", AGREEMENT_KEY), (f"query with ≤ {k} attendable keys", AGREEMENT_UNDEFINED)],
              "gradient": [[i / (len(AGREEMENT_RAMP) - 1), c] for i, c in enumerate(AGREEMENT_RAMP)],
              "lo": f"0 of its top-{k} attended keys among its {k} nearest in the picture",
              "hi": f"{k} of {k}", "definition": definition}
    return ColorSpec(codes, agreement_scale(), legend, colorbar=bar, hover=hover)


def color_spec(scheme: str, tokens: dict, idx: np.ndarray, norms: np.ndarray | None = None,
               freq: np.ndarray | None = None, agreement: np.ndarray | None = None,
               agreement_k: int = AGREEMENT_K, agreement_definition: str = "") -> ColorSpec:
    """Colours for the points of token subset ``idx`` (queries first, then keys).
    ``norms``: (2·len(idx),) vector norms in the same order (embedding-norm scheme).
    ``agreement``: (len(idx),) per-query picture agreement (picture-agreement scheme,
    analysis.faithfulness.point_distortion over the same tokens)."""
    m = len(idx)
    if scheme == "picture_agreement":
        return agreement_spec(agreement, m, agreement_k, agreement_definition)
    is_q = np.r_[np.ones(m, bool), np.zeros(m, bool)]
    tok = np.r_[idx, idx]
    if scheme == "qk":
        return ColorSpec((~is_q).astype(np.uint8), discrete_scale([QUERY_GREEN, KEY_PINK]),
                         {"items": [("query", QUERY_GREEN), ("key", KEY_PINK)]})
    if scheme == "norm_position":
        npos = np.asarray(tokens["norm_position"], np.float64)[tok]
        # keys on codes 1..127 (pink ramp), queries on 128..254 (green ramp)
        codes = np.where(is_q, 128 + np.rint(npos * 126), 1 + np.rint(npos * 126)).astype(np.uint8)
        pinks, greens = ramp(["#fde0ef", "#8e0152"], 8), ramp(["#e5f5e0", "#00441b"], 8)
        scale = [[0.0, pinks[0]]]
        scale += [[(1 + i / 7 * 126) / 255, c] for i, c in enumerate(pinks)]
        scale += [[(128 + i / 7 * 126) / 255, c] for i, c in enumerate(greens)]
        scale.append([1.0, greens[-1]])
        return ColorSpec(codes, scale, {"gradients": [("queries", greens, "first", "last"),
                                                      ("keys", pinks, "first", "last")]})
    if scheme == "position_mod5":
        pos = np.asarray(tokens["position"])[tok] % 5
        codes = (pos + np.where(is_q, 5, 0)).astype(np.uint8)
        items = [(f"pos≡{i} query", MOD5_QUERIES[i]) for i in range(5)] + [(f"pos≡{i} key", MOD5_KEYS[i]) for i in range(5)]
        return ColorSpec(codes, discrete_scale(MOD5_KEYS + MOD5_QUERIES), {"items": items})
    if scheme == "token_length":
        lengths = np.array([len(normalise_token(t)) for t in np.asarray(tokens["text"])[idx]])
        lengths = np.r_[lengths, lengths]
        hi = max(int(lengths.max()) if m else 1, 1)
        return ColorSpec(_continuous(lengths, 0, hi), _gradient_scale(), {"gradient": VIRIDIS, "lo": "0", "hi": f"{hi} chars"})
    if scheme == "input_length":
        # AttentionViz's colour by sentence length: tokens of the run's shortest input at one end,
        # of its longest at the other (the run's range, so a colour means the same in every subset)
        all_len = np.asarray(tokens["input_length"], np.int64)
        lengths = all_len[tok]
        lo, hi = (int(all_len.min()), int(all_len.max())) if len(all_len) else (0, 1)
        return ColorSpec(_continuous(lengths, lo, max(hi, lo + 1)), _gradient_scale(), {
            "gradient": VIRIDIS, "lo": f"{lo} tokens", "hi": f"{hi} tokens (input length)"})
    if scheme == "punctuation":
        p = np.array([is_punct_or_special(t) for t in np.asarray(tokens["text"])[idx]], bool)
        codes = np.r_[p, p].astype(np.uint8)
        return ColorSpec(codes, discrete_scale(["#bdbdbd", "#d95f02"]),
                         {"items": [("word", "#bdbdbd"), ("punctuation / special", "#d95f02")]})
    if scheme == "frequency":
        f = (freq if freq is not None else token_frequency(np.asarray(tokens["text"])))[idx]
        lf = np.log10(np.r_[f, f].astype(np.float64))
        return ColorSpec(_continuous(lf, 0, max(float(lf.max()) if m else 1, 1e-6)), _gradient_scale("Plasma"),
                         {"gradient": "Plasma", "lo": "1", "hi": f"{int(f.max()) if m else 1} (log)"})
    if scheme == "embedding_norm":
        if norms is None:
            return color_spec("qk", tokens, idx)
        return ColorSpec(_continuous(norms), _gradient_scale("Cividis"),
                         {"gradient": "Cividis", "lo": "min ‖v‖ (per head)", "hi": "max ‖v‖"})
    if scheme in ("patch_row", "patch_col"):
        v = np.asarray(tokens[scheme], np.int64)[tok]
        g = max(int(v.max()) + 1, 1) if len(v) else 1
        codes = np.where(v < 0, 0, 1 + v).astype(np.uint8)  # code 0 = CLS / not a patch
        cols = sample_colorscale("Turbo", list(np.linspace(0.05, 0.95, g)), colortype="rgb")
        return ColorSpec(codes, discrete_scale([GREY] + cols),
                         {"gradient": "Turbo", "lo": f"{scheme.split('_')[1]} 0", "hi": f"{g - 1}  (grey: CLS)"})
    if scheme == "patch_color":
        rgb = np.asarray(tokens["patch_rgb"], np.int64)[tok]
        q = np.clip(rgb * 6 // 256, 0, 5)
        codes = (1 + q[:, 0] * 36 + q[:, 1] * 6 + q[:, 2]).astype(np.uint8)
        codes[np.asarray(tokens["patch_row"])[tok] < 0] = 0
        palette = [GREY] + [f"rgb({r * 51},{g * 51},{b * 51})" for r in range(6) for g in range(6) for b in range(6)]
        return ColorSpec(codes, discrete_scale(palette), {"items": [("mean RGB of the patch", "#c08040"), ("CLS", GREY)]})
    raise ValueError(f"unknown colour scheme {scheme!r}")


def _rgb(colour: str) -> tuple[float, float, float]:
    colour = colour.strip()
    if colour.startswith("#"):
        return tuple(float(v) for v in hex_to_rgb(colour))
    return tuple(float(v) for v in unlabel_rgb(colour))[:3]


def colorscale_lut(colorscale: list) -> np.ndarray:
    """256 × 3 uint8: the RGB colour of each code 0..255 under a plotly colorscale over [0, 255]
    (piecewise linear between stops, as plotly interpolates; equal stops make steps)."""
    pos = np.array([float(p) for p, _ in colorscale])
    rgb = np.array([_rgb(c) for _, c in colorscale])
    t = np.arange(256) / 255.0
    out = np.stack([np.interp(t, pos, rgb[:, ch]) for ch in range(3)], axis=1)
    return np.rint(out).clip(0, 255).astype(np.uint8)


def rgba_rows(codes: np.ndarray, colorscale: list) -> np.ndarray:
    """n × 4 uint8 RGBA (alpha 255) of colour codes 0..255 under ``colorscale``: what plotly.js would
    compute per point, done once on the server so the browser skips its per-point colour-string
    round trip (about 10 µs a point in scattergl). Channels are kept ≥ 2 so that plotly.js never
    reads a near-black row as 0..1 floats."""
    lut = np.concatenate([np.maximum(colorscale_lut(colorscale), 2), np.full((256, 1), 255, np.uint8)], axis=1)
    return lut[np.asarray(codes, np.int64).clip(0, 255)]
