"""The ``atlas`` command (installed by ``pip install .`` / ``pip install -e .``):

    atlas precompute run --model minilm --corpus demo --cache ./cache     # = python -m precompute …
    atlas serve --cache ./cache/demo --port 8050                          # the dashboard (laptop mode)
    atlas serve-when-ready READY PID LOG [serve options]                  # scripts/run.sh's first run
    atlas worker [celery worker options]                                  # Celery worker (ATLAS_REDIS_URL)
    atlas hash-password alice --role editor                               # a users-file line (team server)

The team server stays ``gunicorn -c gunicorn.conf.py attention_atlas.wsgi:server``. Each subcommand
hands the rest of the command line to the module that owns it, so its ``--help`` is the real one."""
from __future__ import annotations

import sys

COMMANDS = {
    "precompute": "compute a run into a store (python -m precompute): run | list | export",
    "serve": "serve the dashboard on a store (laptop mode)",
    "serve-when-ready": "serve once a background precompute has every head's PCA (scripts/run.sh)",
    "worker": "a Celery worker for team jobs (celery -A jobs.worker worker --pool=solo …)",
    "hash-password": "print a team-server users-file line (user:bcrypt-hash[:role])",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "usage: atlas COMMAND [options]   (atlas COMMAND --help for its options)\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "precompute":
        from precompute.cli import main as precompute_main

        return precompute_main(rest) or 0
    if command == "serve":
        from app import main as serve_main

        serve_main(rest)
        return 0
    if command == "serve-when-ready":
        from attention_atlas.serve_when_ready import main as when_ready_main

        when_ready_main(rest)
        return 0
    if command == "worker":
        from celery.__main__ import main as celery_main

        sys.argv = ["celery", "-A", "jobs.worker", "worker", *(rest or ["--pool=solo", "--loglevel=INFO"])]
        return celery_main() or 0
    if command == "hash-password":
        from attention_atlas.teamauth import main as teamauth_main

        return teamauth_main(["hash-password", *rest])
    print(f"atlas: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
