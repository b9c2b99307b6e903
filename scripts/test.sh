#!/usr/bin/env bash
# Install everything stackwatch needs (venv, Python deps, npm deps) and run the whole suite:
# lint, types, unit, integration (real Tansu, PostgreSQL 18, PGlite-TimescaleDB) and e2e tests.
# Exits non-zero on any failure, including "no tests collected".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# promtool (Prometheus rule checks and rule unit tests) comes with Debian's prometheus package.
if ! command -v promtool >/dev/null 2>&1; then
  echo "== installing Debian's prometheus (promtool)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q prometheus >/dev/null || { apt-get update -q && apt-get install -y -q prometheus >/dev/null; }
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== pytest"; pytest "$@"
