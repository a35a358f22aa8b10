"""``GET /_atlas/matrix-preview.png?<the page's query string>``: the Matrix View as a picture,
shown by assets/preview.js as soon as the page renders and replaced by the interactive view
once plotly.js has drawn it (the first paint does not wait for plotly.js and WebGL)."""
from __future__ import annotations

import logging

import flask
from urllib.parse import urlencode

from attention_atlas.dashboard_data import DataError
from figures.preview import matrix_png
from figures.urlstate import parse

from .matrix import drawn_points

log = logging.getLogger("atlas.preview")


def preview_png(data, search: str, width: int = 1000, last: str | None = None) -> bytes | None:
    """The picture for a page's query string, or None when there is nothing to draw. ``last``: the
    run the browser looked at last (what the page opens when the link names no run)."""
    from figures.encdec import resolve_kind

    from .state import default_run, resolve_view_projection
    state, _ = parse(search)
    runs = data.run_ids()
    if not runs:
        return None
    run = state["run"] if state["run"] in runs else default_run(data, runs, last)
    info = data.info(run)
    state["proj"] = resolve_view_projection(info, state["proj"])
    d = drawn_points(data, run, state["proj"], ["on"] if state["translate"] else [], ["on"] if state["scaled"] else [],
                     state["lod"], state["sort"], state["rho"], state["color"], state["q"],
                     ["on"] if state["regex"] else [], state["token"],
                     kind=resolve_kind(info, state["kind"], state["layer"]))
    if not len(d["md"].x):
        return None
    return matrix_png(d, width=width)


def register(app, context):
    data = context.data
    prefix = app.config.requests_pathname_prefix.rstrip("/")

    @app.server.route(f"{prefix}/_atlas/matrix-preview.png")
    def matrix_preview():
        args = flask.request.args
        try:
            width = min(2400, max(300, int(args.get("w", "1000"))))
        except ValueError:
            width = 1000
        search = urlencode([(k, v) for k, v in args.items(multi=True) if k not in ("w", "last")])
        try:
            png = preview_png(data, search, width, args.get("last"))
        except DataError as exc:  # no picture; the interactive view reports the problem
            log.info("no matrix preview: %s", exc)
            png = None
        except Exception:  # noqa: BLE001 - HTTP edge: a failed picture is a 204, the interactive view draws
            log.exception("matrix preview failed")
            png = None
        if png is None:
            return flask.Response(status=204)
        resp = flask.Response(png, mimetype="image/png")
        resp.headers["Cache-Control"] = "private, max-age=60"
        return resp
