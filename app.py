"""Attention Atlas dashboard.

    atlas serve --cache ./cache/demo --host 127.0.0.1 --port 8050        # laptop (= python -m attention_atlas serve)
    python app.py --cache ./cache/demo                                   # the same, from a checkout
    gunicorn -c gunicorn.conf.py attention_atlas.wsgi:server             # team server (attention_atlas/wsgi.py)

``create_app(cache_dir, settings)`` builds the Dash app; settings come from attention_atlas/settings.py
(defaults < ATLAS_CONFIG file < ATLAS_* environment). ``build_app`` returns the app together with
its application context (attention_atlas/context.py: settings, store facade, sign-in), which every
feature's ``register(app, ctx)`` receives; nothing is kept as attributes of the Dash app.

This module sits at the top of the repository beside ``assets/`` (the design's layout: ``app.py`` ·
``layouts/`` · ``callbacks/`` · ``precompute/`` · ``assets/`` …); ``pip install .`` installs it as the
top-level module ``app`` and the assets as package data of ``attention_atlas`` (pyproject.toml maps
``attention_atlas.assets`` to ``assets/``), so :func:`assets_folder` finds them in both places."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import dash
from dash import set_props

from attention_atlas.settings import setup_logging  # noqa: F401 - wsgi.py and main() use it from here

HERE = Path(__file__).resolve().parent


def assets_folder() -> Path:
    """The folder of the CSS/JS assets: ``assets/`` beside this file in a checkout (or an editable
    install), else the copy ``pip install .`` put in the attention_atlas package."""
    here = HERE / "assets"
    if (here / "style.css").is_file():  # not just any folder called assets beside site-packages/app.py
        return here
    from importlib.resources import files

    installed = Path(str(files("attention_atlas") / "assets"))
    if (installed / "style.css").is_file():
        return installed
    raise RuntimeError(f"the dashboard's assets are missing: neither {here} nor {installed} exists "
                       "(reinstall: pip install .)")


def create_app(cache_dir: str | os.PathLike | None = None, settings=None) -> dash.Dash:
    """The Dash app (for the entry points that only serve it; see :func:`build_app`)."""
    return build_app(cache_dir, settings)[0]


def build_app(cache_dir: str | os.PathLike | None = None, settings=None, embeddable: bool = False):
    """(the Dash app, its AppContext). ``embeddable``: shown in a notebook's iframe, so pages are not
    refused to frames (attention_atlas/notebook.py)."""
    from dataclasses import replace

    from attention_atlas import serving
    from attention_atlas.context import AppContext
    from callbacks import register_all
    from attention_atlas.dashboard_data import Data
    from jobs.manager import make_manager
    from layouts import ids
    from layouts.main import layout
    from attention_atlas.settings import load_settings

    if settings is None:
        settings = load_settings(cache=str(cache_dir) if cache_dir else None)
    elif cache_dir:
        settings = replace(settings, cache=str(cache_dir))
    settings = _usable_jobs_dir(settings)
    data = Data(settings.cache)

    def on_error(err):  # safety net: a message in the page instead of a failed request
        from dash import ctx
        logging.getLogger("atlas").exception("callback error (trigger %s, outputs %s)",
                                             getattr(ctx, "triggered_id", None),
                                             str(getattr(ctx, "outputs_list", ""))[:200])
        set_props(ids.MSG_ERROR, {"children": f"something went wrong ({err.__class__.__name__}: "
                                            f"{str(err).splitlines()[0][:200] if str(err) else ''}); "
                                            "the rest of the page still works"})

    app = dash.Dash(__name__, assets_folder=str(assets_folder()), title="Attention Atlas", compress=True,
                    serve_locally=True, update_title=None, on_error=on_error,
                    # the analysis tabs' components enter the page when a tab is first shown
                    # (layouts/analysis.py); tests/unit/test_ids.py checks instead that every id a callback
                    # names is in the page once every tab is mounted
                    suppress_callback_exceptions=True,
                    background_callback_manager=make_manager(settings),
                    # the one renderer hook: assets/drawcost.js stamps when the Matrix View's figure is asked for
                    hooks={"request_pre": "function (p) { if (window.atlasRequestPre) { window.atlasRequestPre(p); } }"})
    served = serving.install(app, settings, data, embeddable=embeddable)
    ctx = AppContext(settings=settings, data=data, auth=served.auth, watchdog=served.watchdog,
                     embeddable=bool(embeddable))
    # dcc.Graph loads plotly.js only once the layout has rendered; fetch it from the start so
    # it is parsed by the time the Matrix View's data arrives (same URL dcc's loader uses)
    plotly_url = f"{app.config.requests_pathname_prefix}_dash-component-suites/plotly/package_data/plotly.min.js"
    app.index_string = app.index_string.replace(
        "{%css%}", f'<link rel="preload" as="script" href="{plotly_url}">\n        {{%css%}}', 1)
    app.layout = layout()
    register_all(app, ctx)
    app.server.config["COMPRESS_MIN_SIZE"] = 500  # flask-compress is wired by compress=True (gzip)
    _cache_static_compression(app.server)
    return app, ctx


def _usable_jobs_dir(settings):
    """The settings with a jobs folder this process can write. The default one sits beside the store;
    when that is on a read-only mount (a store served read-only) a per-user folder is used instead,
    with one warning line, so the dashboard still starts and serves the store."""
    import hashlib
    from dataclasses import replace

    path = settings.jobs_path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return settings
    except OSError as exc:
        problem = exc.strerror or exc.__class__.__name__
    if settings.jobs_dir:  # chosen explicitly: say so instead of silently moving it
        raise SystemExit(f"error: ATLAS_JOBS_DIR {path} is not writable ({problem}): choose a writable folder")
    tag = hashlib.sha256(str(Path(settings.cache).expanduser().resolve()).encode()).hexdigest()[:12]
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attention-atlas" / f"jobs-{tag}"
    logging.getLogger("atlas").warning("jobs folder %s is not writable (%s; a read-only store?): using %s instead "
                                       "(set ATLAS_JOBS_DIR to choose)", path, problem, fallback)
    return replace(settings, jobs_dir=str(fallback))


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
    from attention_atlas.settings import SettingsError, load_settings

    p = argparse.ArgumentParser(prog="atlas serve", description="Serve the Attention Atlas dashboard (laptop mode; "
                                            "team servers use gunicorn -c gunicorn.conf.py attention_atlas.wsgi:server)")
    p.add_argument("--cache", help="store directory (env ATLAS_CACHE; default ./cache/demo)")
    p.add_argument("--host", help="address (env ATLAS_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env ATLAS_PORT; default 8050)")
    p.add_argument("--config", help="TOML settings file (env ATLAS_CONFIG)")
    p.add_argument("--debug", action="store_true", help="Dash debug mode (dev tools, reloader)")
    args = p.parse_args(argv)
    try:
        settings = load_settings(args.config, cache=args.cache, host=args.host, port=args.port)
    except SettingsError as exc:
        raise SystemExit(f"error: {exc}") from None
    setup_logging(settings.log_level)
    from attention_atlas.settings import exposure_warning

    warning = exposure_warning(settings)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    app = create_app(settings=settings)
    app.run(host=settings.host, port=settings.port, debug=args.debug)


if __name__ == "__main__":
    main()
