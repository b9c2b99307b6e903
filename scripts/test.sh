#!/usr/bin/env bash
# Install everything stackwatch needs (venv, Python deps, npm deps) and run the whole suite:
# lint, types, unit, integration (real Tansu, PostgreSQL 18, PGlite-TimescaleDB) and e2e tests.
# Exits non-zero on any failure, including "no tests collected".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== pytest"; pytest "$@"
