"""Background jobs: the Dash background-callback manager (diskcache locally, Celery + Redis for a
team) and the shared registry of runs started from the UI."""
