"""Team-server entry point: ``gunicorn -c gunicorn.conf.py attention_atlas.wsgi:server``.

Settings come from ATLAS_* environment variables and/or the TOML file named by ATLAS_CONFIG
(see settings.py and the README). Debug mode is never on here. Authentication is required in
this mode: set ATLAS_AUTH=basic (with ATLAS_USERS_FILE) or ATLAS_AUTH=proxy; serving a team
without it needs an explicit ATLAS_AUTH=none."""
from __future__ import annotations

import app as app_module
from app import setup_logging
from attention_atlas.settings import SettingsError, team_settings  # noqa: F401 - SettingsError re-exported


def build_app(env=None):
    """(the team server's Dash app, its AppContext)."""
    settings = team_settings(env)
    setup_logging(settings.log_level)
    app, context = app_module.build_app(settings=settings)
    app.enable_dev_tools(debug=False)  # explicit: no dev tools, no hot reload, no tracebacks
    return app, context


def build(env=None):
    return build_app(env)[0]


_built = {}


def __getattr__(name):  # PEP 562: build on first use of ``wsgi.app`` / ``wsgi.server`` (gunicorn's import)
    if name in ("app", "server"):
        if "app" not in _built:
            _built["app"] = build()
        return _built["app"] if name == "app" else _built["app"].server
    raise AttributeError(name)
