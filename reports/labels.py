"""Bilingual (中文 / English) labels of the report, in the vocabulary of the rest of the project.

Factor names come from HJ 212-2017 App. B.2 (`stackwatch.hj212.codes`), alert titles from
`stackwatch.alerts.RULE_TITLES`, 超标 vs 超过超低排放限值 from `compliance.LEVEL_TERMS`.
"""

from __future__ import annotations

from stackwatch.alerts import RULE_TITLES
from stackwatch.compliance import LEVEL_TERMS, HourStatus, Level, LimitKind, Severity
from stackwatch.hj212.codes import factor_info
from stackwatch.models import Rule

__all__ = [
    "KIND_LABELS",
    "SEVERITY_LABELS",
    "STATE_LABELS",
    "STATUS_LABELS",
    "basis_label",
    "factor_label",
    "factor_unit",
    "rule_label",
]

KIND_LABELS: dict[LimitKind, tuple[str, str]] = {
    LimitKind.ULTRA_LOW: ("超低排放限值", "ultra-low limit"),
    LimitKind.STANDARD: ("排放标准", "emission standard"),
    LimitKind.FUGITIVE: ("车间扬尘控制值", "workshop dust value"),
}

STATUS_LABELS: dict[HourStatus, tuple[str, str]] = {
    HourStatus.COMPLIANT: LEVEL_TERMS[Level.WITHIN],
    HourStatus.WARNING: ("预警", "warning"),
    HourStatus.EXCEEDANCE: ("超限", "above the limit"),
    HourStatus.INVALID: ("无效", "invalid"),
    HourStatus.STOPPED: ("停运", "stopped"),
    HourStatus.UNJUDGED: ("未判定", "not judged"),
}

SEVERITY_LABELS: dict[str, tuple[str, str]] = {
    Severity.WARNING.value: ("预警", "warning"),
    Severity.ALARM.value: ("告警", "alarm"),
    Severity.CRITICAL.value: ("严重", "critical"),
}

STATE_LABELS: dict[str, tuple[str, str]] = {
    "active": ("未确认", "active"),
    "acknowledged": ("已确认", "acknowledged"),
    "cleared": ("已恢复", "cleared"),
    "suppressed": ("已抑制", "suppressed (C/M/F)"),
}


def factor_label(code: str) -> tuple[str, str]:
    """(中文, English) name of a factor code; the code itself when it is not in App. B.2."""
    info = factor_info(code)
    if info is None:
        return code, code
    return info.name_zh, info.name_en


def factor_unit(code: str) -> str:
    """Concentration unit of a factor (mg/m³ for pollutants)."""
    info = factor_info(code)
    return info.unit if info is not None else ""


def basis_label(basis: str | None, ref_o2: float | None) -> tuple[str, str]:
    """(中文, English) O2 basis of a value: converted to a reference O2, or measured."""
    if basis == "converted" and ref_o2 is not None:
        return f"折算（基准氧 {ref_o2:g}%）", f"at {ref_o2:g} % O2"
    return "实测", "measured"


def rule_label(rule: str) -> tuple[str, str]:
    """Bilingual title of an alert rule (for alerts whose events carry no title)."""
    try:
        return RULE_TITLES[Rule(rule)]
    except ValueError:
        return rule, rule
