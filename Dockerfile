# One image for the stackwatch gateway, stream worker, sinks, notifier, api and simulator.
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# Reports: WeasyPrint lays out PDFs with pango; a CJK font so 中文 renders in charts and PDFs.
RUN apt-get update && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY stackwatch ./stackwatch
COPY streams ./streams
COPY sinks ./sinks
COPY simulators ./simulators
COPY reports ./reports
COPY embedded ./embedded
COPY commands ./commands
# /app stays root's and read-only to the processes; the registry is the operator's file,
# bind-mounted read-only at /app/registry; state (Faust tables, the notifier's schedule) goes
# to STACKWATCH_DATA_DIR=/var/lib/stackwatch, a volume per service in compose (a new named
# volume takes this directory's owner, so the unprivileged user can write it).
RUN pip install --no-cache-dir . && useradd --system --uid 10001 stackwatch \
    && mkdir -p /app/registry /var/lib/stackwatch && chown stackwatch /var/lib/stackwatch
ENV STACKWATCH_DATA_DIR=/var/lib/stackwatch
USER stackwatch
EXPOSE 9212 6066 6068 9308
CMD ["stackwatch", "--help"]
