# One image for the stackwatch gateway, stream worker, sinks and simulator.
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stackwatch ./stackwatch
COPY streams ./streams
COPY sinks ./sinks
COPY simulators ./simulators
RUN pip install --no-cache-dir . && useradd --system --uid 10001 stackwatch \
    && mkdir -p /app/registry && chown stackwatch /app/registry
USER stackwatch
EXPOSE 9212 6066 9308
CMD ["stackwatch", "--help"]
