"""Export of views: pure functions, no Dash.

- :func:`html_snapshot`: figures (as the browser holds them) → one self-contained HTML page
  with plotly.js inlined; nothing is fetched from the network when it opens.
- ``*_table`` functions: the numbers behind a view as a :class:`Table`, and :func:`to_csv` /
  :func:`parse_csv` for the CSV files (``#`` comment lines first, then a header row; text
  fields always quoted, float32 values written with 9 significant digits, float64 with 17,
  so every number reads back exactly).
- :func:`figure_table`: the points of any figure (generic export of views without their own
  table, e.g. analysis tabs).
"""
from __future__ import annotations

import base64
import html as _html
import json
import re
from dataclasses import dataclass, field

import numpy as np

# ---------------------------------------------------------------------------- file names
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(part) -> str:
    return _UNSAFE.sub("-", str(part)).strip("-.") or "x"


def export_filename(run: str | None, view: str, parts=(), ext: str = "csv") -> str:
    """``<run>_<view>[_<part>…].<ext>`` with only file-name-safe characters."""
    bits = [safe_name(run or "no-run"), safe_name(view)] + [safe_name(p) for p in parts if p not in (None, "")]
    return "_".join(bits) + "." + ext


# ---------------------------------------------------------------------------- tables / CSV
@dataclass
class Table:
    columns: list[str]
    data: list                      # one array/list per column, equal lengths
    comments: list[str] = field(default_factory=list)

    def __post_init__(self):
        if len(self.columns) != len(self.data):
            raise ValueError("one data column per column name")
        lengths = {len(c) for c in self.data}
        if len(lengths) > 1:
            raise ValueError(f"columns of unequal length: {sorted(lengths)}")

    @property
    def n_rows(self) -> int:
        return len(self.data[0]) if self.data else 0

    def column(self, name: str):
        return self.data[self.columns.index(name)]


def _quote(s) -> str:
    return '"' + str(s).replace('"', '""') + '"'


def _format_column(col) -> list[str]:
    if isinstance(col, np.ndarray):
        if col.dtype == np.float32:
            return ["" if not np.isfinite(v) else s for v, s in zip(col, np.char.mod("%.9g", col))]
        if np.issubdtype(col.dtype, np.floating):
            return ["" if not np.isfinite(v) else s for v, s in zip(col, np.char.mod("%.17g", col.astype(np.float64)))]
        if np.issubdtype(col.dtype, np.integer) or col.dtype == bool:
            return [str(int(v)) for v in col.tolist()]
        return [_quote(v) for v in col.tolist()]
    out = []
    for v in col:
        if v is None:
            out.append("")
        elif isinstance(v, (bool, np.bool_)):
            out.append(str(int(v)))
        elif isinstance(v, (int, np.integer)):
            out.append(str(int(v)))
        elif isinstance(v, (float, np.floating)):
            out.append("" if not np.isfinite(v) else "%.17g" % float(v))
        else:
            out.append(_quote(v))
    return out


def to_csv(table: Table) -> str:
    """CSV text: ``# comment`` lines, a header row, then the rows (LF line ends)."""
    lines = ["# " + c.replace("\n", " ") for c in table.comments]
    lines.append(",".join(table.columns))
    cols = [_format_column(c) for c in table.data]
    lines.extend(",".join(row) for row in zip(*cols))
    return "\n".join(lines) + "\n"


def parse_csv(text: str) -> tuple[list[str], list[str], list[list[str]]]:
    """(comments, header, rows of strings) of a CSV written by :func:`to_csv`."""
    import csv
    import io
    lines = text.splitlines()
    i = 0
    comments = []
    while i < len(lines) and lines[i].startswith("#"):
        comments.append(lines[i][1:].strip())
        i += 1
    reader = csv.reader(io.StringIO("\n".join(lines[i:])))
    rows = list(reader)
    return comments, (rows[0] if rows else []), rows[1:]


def csv_columns(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """(comments, {column: list of string values}) of a CSV written by :func:`to_csv`."""
    comments, header, rows = parse_csv(text)
    return comments, {h: [r[j] for r in rows] for j, h in enumerate(header)}


# ---------------------------------------------------------------------------- view tables
def matrix_table(md, text, input_id, position, coords_of, sampled_note: str = "") -> Table:
    """One row per point of the Matrix View trace, in trace order.

    ``md``: figures.matrix.MatrixData (what the view drew); ``coords_of(l, h)`` → the head's
    stored 2D projection (2·n_tokens × ≥2, queries then keys). ``matrix_x``/``matrix_y`` are
    the plotted (tiled, uint16) positions; ``proj_x``/``proj_y`` the head's own projection."""
    toks, is_key = md.point_tokens()
    sel = md.pt_rows
    n, m, P = md.n_points // 2, md.per_head // 2, md.per_head
    role = np.where(is_key, "key", "query")
    text, input_id, position = np.asarray(text), np.asarray(input_id), np.asarray(position)
    layer, head, roles, tok, px, py = [], [], [], [], [], []
    for i, (l, h) in enumerate(md.shown):
        c = np.asarray(coords_of(l, h))
        px.append(c[sel, 0].astype(np.float32))
        py.append(c[sel, 1].astype(np.float32))
        layer.append(np.full(P, l, np.int64))
        head.append(np.full(P, h, np.int64))
        roles.append(role)
        tok.append(toks)
    if md.shown:
        layer, head, roles, tok = (np.concatenate(a) for a in (layer, head, roles, tok))
        px, py = np.concatenate(px), np.concatenate(py)
    else:
        layer = head = tok = np.zeros(0, np.int64)
        roles = np.zeros(0, str)
        px = py = np.zeros(0, np.float32)
    point = np.arange(len(layer), dtype=np.int64)
    comments = ([f"{len(md.shown)} heads drawn · {m:,} of {n:,} tokens per head ({2 * m:,} points: queries and keys)"]
                if md.interleaved else
                [f"{len(md.shown)} {md.kind} heads drawn · {P:,} of {md.n_points:,} points per head (queries: target "
                 "tokens, keys: source tokens; token = row of the run's source-then-target token table)"])
    if md.kind and md.interleaved:
        comments.append(f"{md.kind} heads; token = row of the run's source-then-target token table")
    if sampled_note:
        comments.append(sampled_note)
    if md.missing:
        comments.append(f"{len(md.missing)} heads not computed yet (no rows): "
                        + ", ".join(f"L{l} H{h}" for l, h in md.missing[:20]) + ("…" if len(md.missing) > 20 else ""))
    if md.filtered:
        f = getattr(md, "score_fig", None)
        name = f"the filter on {f['label']}".replace("ρ", "rho") if f else "the |rho| filter"
        comments.append(f"{len(md.filtered)} heads hidden by {name} (no rows)")
    if getattr(md, "misleading", None):
        comments.append(f"{len(md.misleading)} heads whose {md.misleading_label} is positive (the picture misleads): "
                        .replace("ρ", "rho") + ", ".join(f"L{l} H{h}" for l, h in md.misleading))
    return Table(["point", "layer", "head", "role", "token", "input", "position", "text",
                  "matrix_x", "matrix_y", "proj_x", "proj_y"],
                 [point, layer, head, roles, tok, input_id[tok].astype(np.int64), position[tok].astype(np.int64),
                  text[tok], np.asarray(md.x, np.int64), np.asarray(md.y, np.int64), px, py], comments)


def single_table(coords, dim: int, text, input_id, position, norms=None, search_mask=None,
                 attention_row: dict | None = None, sides=None) -> Table:
    """Every point of one head (queries then keys, token order) with its projection.

    ``attention_row``: {key token: weight} of the selected query (its input's keys), written
    on the key rows as ``attention_from_selected`` (empty elsewhere)."""
    coords = np.asarray(coords)
    n = len(coords) // 2
    d = 3 if dim == 3 and coords.shape[1] >= 3 else 2
    tok = np.r_[np.arange(n), np.arange(n)].astype(np.int64)
    is_key = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    if sides is not None:   # encoder–decoder head (figures.encdec.HeadSides): rows of its sides
        tok, is_key = sides.point_tokens()
    cols = ["point", "role", "token", "input", "position", "text", "x", "y"] + (["z"] if d == 3 else [])
    data = [np.arange(len(tok), dtype=np.int64), np.where(is_key, "key", "query"), tok,
            np.asarray(input_id)[tok].astype(np.int64), np.asarray(position)[tok].astype(np.int64),
            np.asarray(text)[tok]] + [coords[:, j].astype(np.float32) for j in range(d)]
    if norms is not None:
        cols.append("norm")
        data.append(np.asarray(norms, np.float32))
    if search_mask is not None:
        cols.append("search_match")
        data.append(np.asarray(search_mask, bool)[tok])
    if attention_row is not None:
        w = np.full(len(tok), np.nan)
        key_row = {int(t): i for i, t in enumerate(tok) if is_key[i]}
        for k, v in attention_row.items():
            w[key_row[int(k)]] = v
        cols.append("attention_from_selected")
        data.append(w)
    return Table(cols, data)


def attention_table(a, q_labels, k_labels=None, raw=None, q_pos=None, k_pos=None, prefix=None) -> Table:
    """Long format of an attention matrix: one row per (query, key).

    ``prefix``: [(column, value)] constant columns put first (e.g. layer, head)."""
    a = np.asarray(a)
    nq, nk = a.shape
    k_labels = q_labels if k_labels is None else k_labels
    qi, ki = np.divmod(np.arange(nq * nk), nk)
    q_pos = np.arange(nq) if q_pos is None else np.asarray(q_pos)
    k_pos = np.arange(nk) if k_pos is None else np.asarray(k_pos)
    cols, data = [], []
    for name, value in prefix or []:
        cols.append(name)
        data.append(np.full(nq * nk, value, np.int64) if isinstance(value, (int, np.integer))
                    else np.array([value] * (nq * nk)))
    cols += ["query_pos", "query_token", "key_pos", "key_token", "weight"]
    data += [q_pos[qi].astype(np.int64), np.asarray(q_labels, dtype=object)[qi].astype(str),
             k_pos[ki].astype(np.int64), np.asarray(k_labels, dtype=object)[ki].astype(str), a.ravel()]
    if raw is not None:
        cols.append("attention")
        data.append(np.asarray(raw).ravel())
    return Table(cols, data)


def concat_tables(tables: list[Table], comments=()) -> Table:
    if not tables:
        return Table([], [], list(comments))
    cols = tables[0].columns
    data = []
    for j in range(len(cols)):
        parts = [t.data[j] for t in tables]
        data.append(np.concatenate([np.asarray(p) for p in parts]) if parts else np.zeros(0))
    return Table(cols, data, list(comments))


def image_table(words, a_row, patch_row, patch_col, query_pos: int) -> Table:
    """Attention from one query (CLS or patch) to every token of an image."""
    pr, pc = np.asarray(patch_row).astype(np.int64), np.asarray(patch_col).astype(np.int64)
    n = len(a_row)
    return Table(["query_pos", "key_pos", "key_token", "patch_row", "patch_col", "weight"],
                 [np.full(n, query_pos, np.int64), np.arange(n, dtype=np.int64), np.asarray(words).astype(str),
                  pr, pc, np.asarray(a_row)])


def arrows_table(strongest) -> Table:
    s = list(strongest)
    col = (lambda j, t: np.array([r[j] for r in s], t)) if s else (lambda j, t: np.zeros(0, t))
    return Table(["from_row", "from_col", "to_row", "to_col", "weight"],
                 [col(0, np.int64), col(1, np.int64), col(2, np.int64), col(3, np.int64), col(4, np.float64)])


# ---------------------------------------------------------------------------- figures
_DTYPES = {"f8": np.float64, "f4": np.float32, "i4": np.int32, "u4": np.uint32, "i2": np.int16,
           "u2": np.uint16, "i1": np.int8, "u1": np.uint8, "u1c": np.uint8}


def decode_array(v):
    """A figure array as numpy: Plotly's base64 typed-array spec ({dtype, bdata[, shape]}), a list,
    or a scalar (returned as is)."""
    if isinstance(v, dict) and "bdata" in v and "dtype" in v:
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=_DTYPES[v["dtype"]])
        if v.get("shape"):
            arr = arr.reshape([int(s) for s in str(v["shape"]).split(",")])
        return arr
    if isinstance(v, (list, tuple)):
        return np.asarray(v, dtype=object if any(isinstance(x, (str, type(None), list)) for x in v) else None)
    if isinstance(v, np.ndarray):
        return v
    return v


def _as_dict(fig) -> dict:
    if hasattr(fig, "to_plotly_json"):
        fig = fig.to_plotly_json()
    return fig if isinstance(fig, dict) else {}


def trace_points(trace: dict) -> int:
    """Number of points a trace draws (heatmap cells for z-only traces)."""
    for k in ("x", "y", "z"):
        v = decode_array(trace.get(k))
        if isinstance(v, np.ndarray):
            return int(v.size) if k == "z" and trace.get("type") in ("heatmap", "image") else int(len(v))
    return 0


def figure_table(figures: list, names: list[str] | None = None) -> Table:
    """Generic CSV of any figures: one row per point (scatter-like traces: x, y[, z], text) or per
    cell (heatmaps: row, col, x and y labels, z). Columns: graph, trace, trace_name, type, point,
    row, col, x, y, z, text."""
    cols = ["graph", "trace", "trace_name", "type", "point", "row", "col", "x", "y", "z", "text"]
    rows = []
    for g, fig in enumerate(figures):
        fig = _as_dict(fig)
        gname = (names[g] if names and g < len(names) else str(g))
        for t, tr in enumerate(fig.get("data") or []):
            kind = tr.get("type", "scatter")
            name = tr.get("name") or ""
            x, y, z = (decode_array(tr.get(k)) for k in ("x", "y", "z"))
            text = decode_array(tr.get("text"))
            if kind in ("heatmap", "contour") and isinstance(z, np.ndarray) and z.ndim >= 1:
                zz = np.asarray(z.tolist() if z.dtype == object else z, dtype=np.float64)
                if zz.ndim == 1:
                    zz = zz[None, :]
                for r in range(zz.shape[0]):
                    for c in range(zz.shape[1]):
                        xl = x[c] if isinstance(x, np.ndarray) and c < len(x) else c
                        yl = y[r] if isinstance(y, np.ndarray) and r < len(y) else r
                        rows.append((gname, t, name, kind, r * zz.shape[1] + c, r, c, xl, yl, zz[r, c], ""))
                continue
            if not isinstance(x, np.ndarray) and not isinstance(y, np.ndarray):
                continue  # images, annotations-only traces: nothing tabular
            n = len(x) if isinstance(x, np.ndarray) else len(y)
            for i in range(n):
                xi = x[i] if isinstance(x, np.ndarray) else None
                yi = y[i] if isinstance(y, np.ndarray) else None
                zi = z[i] if isinstance(z, np.ndarray) and z.ndim == 1 and i < len(z) else None
                ti = text[i] if isinstance(text, np.ndarray) and text.ndim == 1 and i < len(text) else (
                    text if isinstance(text, str) else "")
                rows.append((gname, t, name, kind, i, None, None, xi, yi, zi, ti))
    data = [[r[j] for r in rows] for j in range(len(cols))]
    # numpy scalars of float32 arrays print with 9 digits like the typed tables
    for j in (7, 8, 9):
        data[j] = [float(v) if isinstance(v, (np.floating, np.integer)) and not isinstance(v, bool) else v
                   for v in data[j]]
    return Table(cols, data, [f"{len(figures)} graph(s): the points (cells for heatmaps) of each trace as drawn"])


# ---------------------------------------------------------------------------- HTML snapshot
_NAMESPACES = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink", "http://www.w3.org/1999/xhtml",
               "http://www.w3.org/XML/1998/namespace")
_RESOURCE = re.compile(r"""(?:\b(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?\s*|url\(\s*["']?|@import\s+["']?)"""
                       r"""((?:https?:)?//[^\s"'<>)]+)""", re.I)


def plotly_bundle() -> str:
    from plotly.offline import get_plotlyjs
    return get_plotlyjs()


def external_resources(html: str) -> list[str]:
    """Network references in an HTML page outside the inlined plotly.js bundle: ``src``/``href``
    attributes, CSS ``url()`` and ``@import`` pointing at http(s) or protocol-relative URLs
    (XML namespace URIs are not fetched and are ignored). Empty for a self-contained page."""
    bundle = plotly_bundle()
    rest = html.replace(bundle, "")
    return [u for u in _RESOURCE.findall(rest) if not u.startswith(_NAMESPACES)]


SNAPSHOT_CONFIG = {"displaylogo": False, "responsive": True}


def _clean_layout(layout: dict) -> dict:
    layout = dict(layout or {})
    layout.pop("uirevision", None)  # a live-app concern
    return layout


def html_snapshot(figures: list, title: str = "Attention Atlas", caption: list[str] | None = None) -> str:
    """One self-contained HTML page showing ``figures`` (plotly figures or their dicts, e.g. as the
    browser holds them, typed arrays included). plotly.js is inlined once; no MathJax, no CDN."""
    import plotly.io as pio

    if not figures:
        raise ValueError("nothing to export: no figure")
    divs = []
    for i, fig in enumerate(figures):
        d = _as_dict(fig)
        d = {"data": list(d.get("data") or []), "layout": _clean_layout(d.get("layout"))}
        divs.append(pio.to_html(d, include_plotlyjs=(i == 0), full_html=False, include_mathjax=False,
                                validate=False, config=SNAPSHOT_CONFIG, div_id=f"atlas-figure-{i}",
                                default_width="100%"))
    cap = "".join(f"<p>{_html.escape(c)}</p>" for c in (caption or []))
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_html.escape(title)}</title>
<meta name="generator" content="Attention Atlas export">
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 12px 18px; color: #222; }}
h1 {{ font-size: 18px; margin: 4px 0; }}
.caption p {{ margin: 2px 0; color: #555; font-size: 13px; }}
.figure {{ margin-top: 10px; }}
</style>
</head>
<body>
<h1>{_html.escape(title)}</h1>
<div class="caption">{cap}</div>
{"".join(f'<div class="figure">{d}</div>' for d in divs)}
</body>
</html>
"""
    bad = external_resources(page)
    if bad:  # never hand out a page that would fetch something
        raise ValueError(f"snapshot would load {bad[0]} from the network")
    return page


def snapshot_payload_figures(payload: dict) -> list[dict]:
    """The figures of an export request sent by the page (``{"graphs": [{"data", "layout"}]}``)."""
    graphs = (payload or {}).get("graphs") or []
    out = []
    for g in graphs:
        if isinstance(g, str):
            g = json.loads(g)
        if isinstance(g, dict) and isinstance(g.get("data"), list):
            out.append({"data": g["data"], "layout": g.get("layout") or {}})
    return out
