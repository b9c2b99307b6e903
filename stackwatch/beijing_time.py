"""Beijing time, the one clock of HJ 212 data (pure).

HJ 212 DataTime is local time in China (UTC+8, no daylight saving; docs/hj212.md#data-segment),
and HJ 75's hours and days are that clock's hours and days (docs/hj75-data.md#days): every
window, day boundary, report period and message time in stackwatch uses this one constant.
"""

from __future__ import annotations

from datetime import timedelta, timezone

CST = timezone(timedelta(hours=8), "CST")
"""China Standard Time, UTC+8 (no DST)."""
