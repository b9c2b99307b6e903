#!/usr/bin/env bash
# Run stackwatch on a fresh machine with the embedded default services.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/stackwatch demo "$@"
