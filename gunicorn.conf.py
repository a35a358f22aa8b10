"""gunicorn settings for the team server, read from the same ATLAS_* settings as the app.

    gunicorn -c gunicorn.conf.py attention_atlas.wsgi:server

TLS: with ATLAS_CERTFILE and ATLAS_KEYFILE (PEM) gunicorn serves HTTPS itself; behind a reverse
proxy that terminates TLS, leave them empty (see the README's team-server section).
"""
import sys

from attention_atlas.settings import SettingsError, exposure_warning, team_settings

try:
    _s = team_settings()
except SettingsError as exc:  # one line, no traceback, before any worker starts
    sys.exit(f"error: {exc}")

_warning = exposure_warning(_s)
if _warning:
    print(_warning, file=sys.stderr, flush=True)


def _no_server_banner():
    """gunicorn writes ``Server: gunicorn`` itself (before the app's headers): leave it out."""
    from gunicorn.http import wsgi as _gwsgi

    if getattr(_gwsgi.Response.default_headers, "_atlas", False):
        return
    original = _gwsgi.Response.default_headers

    def default_headers(self):
        return [h for h in original(self) if not h.lower().startswith("server:")]

    default_headers._atlas = True
    _gwsgi.Response.default_headers = default_headers


_no_server_banner()
if _s.certfile:
    certfile = _s.certfile
    keyfile = _s.keyfile

bind = f"{_s.host}:{_s.port}"
workers = _s.workers
threads = _s.threads
worker_class = "gthread"
timeout = _s.timeout
graceful_timeout = 30
keepalive = 5
preload_app = False          # each worker opens the store itself (SQLite handles must not cross fork)
max_requests = 2000          # recycle workers now and then (bounded memory)
control_socket_disable = True  # several servers may share a host (tests, teams); nothing here uses it
max_requests_jitter = 200
accesslog = None             # serving.py logs one line per request (with the user, never headers)
errorlog = "-"
loglevel = _s.log_level.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"}},
    "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}},
    "root": {"level": _s.log_level.upper(), "handlers": ["err"]},
    "loggers": {"gunicorn.error": {"level": _s.log_level.upper(), "handlers": ["err"], "propagate": False}},
}
