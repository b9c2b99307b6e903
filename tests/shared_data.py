"""Where the shared data sits: `../shared` beside the repository (as in CI's clean clone)."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
CAPTURE = SHARED / "data" / "hj212-capture-2016-08-24-05.h212"
"""One real hour of provincial HJ 212 traffic (284 loggers), see ../shared/data/README.md."""
