#!/usr/bin/env bash
# Install everything stackwatch needs (venv, Python deps, npm deps) and run the whole suite:
# lint, types, unit, integration (real Tansu, PostgreSQL 18, PGlite-TimescaleDB) and e2e tests.
# Exits non-zero on any failure, including "no tests collected".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Debian packages the tests use as real peers: prometheus (server + promtool, rule checks and the
# PromQL test), chromium + chromium-driver (the acknowledgement page in a real headless browser;
# never a downloaded browser), a CJK font so 中文 pages, screenshots and PDFs render text, and pango.
debian_packages=()
command -v promtool >/dev/null 2>&1 || debian_packages+=(prometheus)
command -v chromium >/dev/null 2>&1 || debian_packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || debian_packages+=(chromium-driver)
fc-list :lang=zh 2>/dev/null | grep -q . || debian_packages+=(fonts-wqy-microhei)
# WeasyPrint (report PDFs) lays text out with pango.
ldconfig -p | grep -q libpangoft2-1.0 || debian_packages+=(libpango-1.0-0 libpangoft2-1.0-0)
if ((${#debian_packages[@]})); then
  echo "== installing Debian packages: ${debian_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${debian_packages[@]}" >/dev/null \
    || { apt-get update -q && apt-get install -y -q "${debian_packages[@]}" >/dev/null; }
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== pytest"; pytest "$@"
