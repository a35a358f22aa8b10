"""Attention Atlas dashboard.

    python app.py --cache ./cache/demo --host 127.0.0.1 --port 8050

``create_app(cache_dir)`` builds the Dash app (for tests and gunicorn:
``gunicorn 'app:create_app("./cache/demo").server'``)."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import dash
from dash import set_props

HERE = Path(__file__).resolve().parent


def create_app(cache_dir: str | os.PathLike | None = None) -> dash.Dash:
    from callbacks import register_all
    from dashboard_data import Data
    from layouts.main import layout

    cache_dir = cache_dir or os.environ.get("ATLAS_CACHE", "./cache/demo")
    data = Data(cache_dir)

    def on_error(err):  # safety net: a message in the page instead of a failed request
        logging.getLogger("atlas").exception("callback error")
        set_props("msg-error", {"children": f"something went wrong ({err.__class__.__name__}: {err}); "
                                            "the rest of the page still works"})

    app = dash.Dash(__name__, assets_folder=str(HERE / "assets"), title="Attention Atlas", compress=True,
                    serve_locally=True, update_title=None, on_error=on_error)
    # dcc.Graph loads plotly.js only once the layout has rendered; fetch it from the start so
    # it is parsed by the time the Matrix View's data arrives (same URL dcc's loader uses)
    plotly_url = f"{app.config.requests_pathname_prefix}_dash-component-suites/plotly/package_data/plotly.min.js"
    app.index_string = app.index_string.replace(
        "{%css%}", f'<link rel="preload" as="script" href="{plotly_url}">\n        {{%css%}}', 1)
    app.layout = layout()
    app.atlas_data = data
    register_all(app, data)
    app.server.config["COMPRESS_MIN_SIZE"] = 500  # flask-compress is wired by compress=True (gzip)
    _cache_static_compression(app.server)
    return app


class _StaticGzipCache:
    """flask-compress cache for the fingerprinted JS/CSS bundles only (plotly.min.js alone is
    3.5 MB: gzipping it again on every page load cost the server ~0.1 s of CPU per visit)."""

    def __init__(self):
        self._d = {}

    def get(self, key):
        return self._d.get(key)

    def set(self, key, value):
        if "/_dash-component-suites/" in key and len(self._d) < 256:
            self._d[key] = value


def _cache_static_compression(server):
    for fn in server.after_request_funcs.get(None, []):
        ext = getattr(fn, "__self__", None)
        if ext is not None and ext.__class__.__name__ == "Compress":
            ext.cache = _StaticGzipCache()
            ext.cache_key = lambda request: request.full_path  # the bundle URLs carry a version stamp


def main(argv=None):
    p = argparse.ArgumentParser(description="Serve the Attention Atlas dashboard")
    p.add_argument("--cache", default=os.environ.get("ATLAS_CACHE", "./cache/demo"), help="store directory")
    p.add_argument("--host", default=os.environ.get("ATLAS_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("ATLAS_PORT", "8050")))
    p.add_argument("--debug", action="store_true", help="Dash debug mode (dev tools, reloader)")
    args = p.parse_args(argv)
    app = create_app(args.cache)
    app.run(host=args.host, port=args.port, debug=args.debug)


if __name__ == "__main__":
    main()
