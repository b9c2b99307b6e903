#!/usr/bin/env bash
# Idempotent install into ./.venv from PyPI and npm only (nothing else is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
if [ -f embedded/pglite_server/package-lock.json ]; then
  (cd embedded/pglite_server && npm ci --no-audit --no-fund --loglevel=error)
fi
