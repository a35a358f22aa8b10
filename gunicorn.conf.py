"""gunicorn settings for the team server, read from the same ATLAS_* settings as the app.

    gunicorn -c gunicorn.conf.py wsgi:server
"""
import sys

from settings import SettingsError, team_settings

try:
    _s = team_settings()
except SettingsError as exc:  # one line, no traceback, before any worker starts
    sys.exit(f"error: {exc}")

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
