"""gunicorn entry point used by tests/integration/test_security.py: the real team server (wsgi.build, so
serving.install and its request watchdog) plus one route that sleeps as long as asked — a stand-in
for a request that runs away on an input nobody foresaw."""
from __future__ import annotations

import time

import flask

from attention_atlas import wsgi

app = wsgi.build()


@app.server.route("/_test/sleep")
def _sleep():
    time.sleep(min(120.0, float(flask.request.args.get("s", "1"))))
    return "slept"


server = app.server
