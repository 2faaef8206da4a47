# Amoeba API image (CPU). Build: docker build -t amoeba .   Run with docker-compose.yml (api + PostgreSQL).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app

# torch first, as the CPU wheel from the PyTorch CPU index (no CUDA libraries in the image)
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# the package (editable, so the bundled models/ directory next to it is found as the default checkpoint)
COPY pyproject.toml alembic.ini ./
COPY cli ./cli
COPY core ./core
COPY profilers ./profilers
COPY server ./server
COPY migrations ./migrations
RUN pip install -e .

# the bundled checkpoint / base model (models/amoeba-tiny-smol or models/amoeba-tiny-base with strategy/)
COPY models ./models

ENV AMOEBA_VAR_DIR=/var/lib/amoeba \
    AMOEBA_HOST=0.0.0.0 \
    AMOEBA_PORT=8000
RUN useradd --system --home /var/lib/amoeba amoeba && mkdir -p /var/lib/amoeba && chown amoeba /var/lib/amoeba
USER amoeba
VOLUME ["/var/lib/amoeba"]
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=5 \
  CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"

# migrations are explicit (the server refuses an un-migrated database), then serve
CMD ["sh", "-c", "amoeba db upgrade && exec amoeba serve"]
