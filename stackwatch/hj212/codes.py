"""Factor codes, the HJ/T 212-2005 → HJ 212-2017 map, and CP key vocabulary.

Source: HJ 212-2017 Appendix B.2 (flue-gas factors, taken from HJ 524-2009) with the
HJ/T 212-2005 codes printed beside them (docs/hj212.md#factor-codes). Only codes whose 2005
equivalent is printed there are mapped; everything else (water ``w…``/2005 ``B01``/``011``/``060``,
vendor codes) passes through unchanged, so no mapping is guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "CODE_2005_TO_2017",
    "CODE_2017_TO_2005",
    "FACTORS",
    "FLAG_MEANINGS",
    "NUMERIC_SUFFIXES",
    "VALID_DATA_FLAGS",
    "FactorInfo",
    "factor_info",
    "is_factor_code",
    "normalise_code",
]


@dataclass(frozen=True, slots=True)
class FactorInfo:
    """One row of HJ 212-2017 Appendix B.2 (flue gas)."""

    code: str
    """HJ 212-2017 code."""
    name_zh: str
    name_en: str
    code_2005: str | None
    unit: str
    """Default concentration/measurement unit as printed in the standard."""
    emission_unit: str | None
    data_type: str | None
    note: str | None = None


FACTORS: tuple[FactorInfo, ...] = (
    FactorInfo("a00000", "废气", "flue gas flow", "B02", "m³/s", "m³", "N6.1",
               "unit as printed in App. B.2; platforms commonly report m³/h"),
    FactorInfo("a01011", "烟气流速", "flue gas velocity", "S02", "m/s", None, "N5.2"),
    FactorInfo("a01012", "烟气温度", "flue gas temperature", "S03", "°C", None, "N3.1"),
    FactorInfo("a01013", "烟气压力", "flue gas pressure", "S08", "kPa", None, "N5.3"),
    FactorInfo("a01014", "烟气湿度", "flue gas humidity", "S05", "%", None, "N3.1"),
    FactorInfo("a01015", "制冷温度", "cooler temperature", "S06", "°C", None, "N3.1"),
    FactorInfo("a01016", "烟道截面积", "duct cross-section area", "S07", "m²", None, "N4.2"),
    FactorInfo("a01017", "烟气动压", "flue gas dynamic pressure", "S04", "kPa", None, "N5.3"),
    FactorInfo("a19001", "氧气含量", "oxygen (O2)", "S01", "%", None, "N3.1"),
    FactorInfo("a34013", "烟尘", "particulate matter (dust)", "01", "mg/m³", "kg", "N4"),
    FactorInfo("a21026", "二氧化硫", "sulphur dioxide (SO2)", "02", "mg/m³", "kg", "N5.2"),
    FactorInfo("a21002", "氮氧化物", "nitrogen oxides (NOx)", "03", "mg/m³", "kg", "N5.1"),
    FactorInfo("a21003", "一氧化氮", "nitric oxide (NO)", None, "mg/m³", "kg", "N4.1"),
    FactorInfo("a21004", "二氧化氮", "nitrogen dioxide (NO2)", None, "mg/m³", "kg", "N4.1"),
    FactorInfo("a21005", "一氧化碳", "carbon monoxide (CO)", "04", "mg/m³", "kg", "N3.3"),
    FactorInfo("a21028", "硫化氢", "hydrogen sulphide (H2S)", "05", "mg/m³", "kg", "N3.2"),
    FactorInfo("a21018", "氟化物", "fluoride", "06", "mg/m³", "kg", "N2.3"),
    FactorInfo("a21017", "氰化物", "cyanide", "07", "mg/m³", "kg", "N3.3"),
    FactorInfo("a21024", "氯化氢", "hydrogen chloride (HCl)", "08", "mg/m³", "kg", "N4.3"),
    FactorInfo("a34038", "沥青烟", "asphalt fume", "09", "mg/m³", "kg", "N4.3"),
    FactorInfo("a21001", "氨", "ammonia (NH3)", "10", "ng/m³", "g", "N4.3",
               "unit as printed in App. B.2"),
    FactorInfo("a21022", "氯气", "chlorine (Cl2)", "11", "mg/m³", "kg", "N4.3",
               "a21022 is chlorine, not fluoride (fluoride is a21018)"),
    FactorInfo("a05001", "二氧化碳", "carbon dioxide (CO2)", "30", "mg/m³", "kg", "N3.3"),
    FactorInfo("a01010", "林格曼黑度", "Ringelmann blackness", "37", "", None, "N1"),
    FactorInfo("a24088", "非甲烷总烃", "non-methane hydrocarbons (NMHC)", None, "mg/m³", "kg",
               None),
    FactorInfo("a24087", "碳氢化合物", "hydrocarbons", "25", "mg/m³", "kg", None),
    FactorInfo("a34001", "总悬浮颗粒物", "TSP (ambient)", None, "ng/m³", None, None),
    FactorInfo("a34002", "PM10", "PM10 (ambient)", None, "ng/m³", None, None),
    FactorInfo("a34004", "PM2.5", "PM2.5 (ambient)", None, "ng/m³", None, None),
)

_BY_CODE: dict[str, FactorInfo] = {f.code: f for f in FACTORS}

CODE_2005_TO_2017: dict[str, str] = {f.code_2005: f.code for f in FACTORS if f.code_2005}
"""HJ/T 212-2005 flue-gas code → HJ 212-2017 code (App. B.2), e.g. ``"01"`` → ``"a34013"``."""

CODE_2017_TO_2005: dict[str, str] = {v: k for k, v in CODE_2005_TO_2017.items()}

NUMERIC_SUFFIXES: frozenset[str] = frozenset(
    {"Rtd", "Min", "Avg", "Max", "Cou", "ZsRtd", "ZsMin", "ZsAvg", "ZsMax", "ZsCou"}
)
"""Per-factor fields that carry a measured number (HJ 212-2017 Table 4, plus ``ZsCou`` seen
in real traffic); a non-numeric value here is an error."""

FLAG_MEANINGS: dict[str, str] = {
    "N": "instrument normal",
    "F": "instrument stopped",
    "M": "maintenance period",
    "S": "manually set value",
    "D": "instrument fault",
    "C": "calibrating",
    "T": "above measurement upper limit",
    "B": "instrument-DAS communication error",
}
"""Data flags, HJ 212-2017 Table 8."""

VALID_DATA_FLAGS: frozenset[str] = frozenset(FLAG_MEANINGS)

# HJ 212-2017 codes: one lower-case letter class + 5 digits (a21026, w01018, e01002, g12701,
# i12001); HJ/T 212-2005 codes: 2 or 3 digits, optionally after one upper-case letter
# (01, 011, S01, B02). Anything else in a measurement key (e.g. ``01018-Rtd``, a typo in the
# standard's App. C.14) is rejected rather than guessed.
_CODE_RE = re.compile(r"[a-z][0-9]{5}|[A-Z]?[0-9]{2,3}", re.ASCII)


def is_factor_code(code: str) -> bool:
    """True when ``code`` has the shape of a 2017 or 2005 factor code."""
    return _CODE_RE.fullmatch(code) is not None


def normalise_code(code: str) -> str:
    """2005 flue-gas codes → 2017 codes; every other code unchanged."""
    return CODE_2005_TO_2017.get(code, code)


def factor_info(code: str) -> FactorInfo | None:
    """Name/unit metadata for a 2017 (or mappable 2005) flue-gas code, if known."""
    return _BY_CODE.get(normalise_code(code))
