"""Limit catalogue: shipped data checked against its sources, query semantics, bad data, CLI.

Expected values are copied by hand from the source rows documented in
docs/limits.md#catalogue-rows (row ids given) and from the Sanmenxia seed plan, never from the
catalogue itself.
"""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from commands.limits import app
from stackwatch.limits import (
    CatalogueError,
    LimitCatalogue,
    LimitKind,
    LimitRule,
    O2Basis,
    OverrideError,
    PointType,
    ReferenceO2ConflictError,
    Status,
    UnknownPointError,
    UnknownProgramError,
    jurisdiction_covers,
    jurisdiction_for,
    load_catalogue,
    parse_catalogue,
)

PM, SO2, NOX, NH3 = "a34013", "a21026", "a21002", "a21001"

# The canonical monitored points, as listed in the task brief (shared with the registry).
CANONICAL_POINTS = [
    ("power", "coal_boiler"),
    ("boiler", "coal_boiler"),
    ("boiler", "gas_boiler"),
    ("cement", "kiln_tail"),
    ("cement", "kiln_head"),
    ("cement", "coal_mill"),
    ("cement", "cement_mill"),
    ("cement", "packing"),
    ("cement", "grinding_workshop"),
    ("steel", "sinter"),
    ("steel", "pellet"),
    ("steel", "coke_oven"),
    ("steel", "reheating_furnace"),
    ("steel", "hot_blast_stove"),
    ("steel", "other"),
    ("coking", "coke_oven_stack"),
    ("coking", "charging"),
    ("coking", "pushing"),
    ("coking", "dry_quenching"),
    ("aluminium", "electrolysis"),
    ("carbon", "anode_baking"),
    ("glass", "furnace"),
    ("coal_chemical", "boiler"),
    ("ceramics", "kiln"),
    ("brick", "kiln"),
    ("refractory", "kiln"),
    ("industrial_furnace", "other"),
]

# Row ids of the source rows (docs/limits.md#catalogue-rows), the Henan kiln row included.
LIMITS_ROW_IDS = (
    {f"C{i}" for i in range(1, 14)}
    | {f"K{i}" for i in range(1, 11)}
    | {f"S{i}" for i in range(1, 11)}
    | {"B1", "B2", "B3", "B4", "A1", "A2", "A3", "G1", "G2", "X1", "DOMAIN-3.1"}
)
# Legal standards the catalogue carries beyond the sources' rows (power and steel), named by
# their standard; every one is from memory, so every one must be flagged unconfirmed.
STANDARD_ROW_IDS = {"GB13223", "GB28662", "GB28663", "GB28664", "GB28665"}

# Rows whose values the sources leave unconfirmed (docs/limits.md#status-of-a-value).
UNCONFIRMED_ROWS = {
    "C2",
    "C3",
    "C4",
    "C5",
    "C6",
    "C7",
    "C12",
    "K3",
    "K4",
    "K10",
    "S3",
    "S4",
    "S5",
    "S6",
    "S7",
    "B3",
    "B4",
    "A1",
    "A2",
    "G1",
    "G2",
}


@pytest.fixture(scope="module")
def cat() -> LimitCatalogue:
    return load_catalogue()


def _by(rules: list[LimitRule], factor: str, kind: LimitKind) -> list[LimitRule]:
    return [r for r in rules if r.factor == factor and r.kind is kind]


def _one(rules: list[LimitRule], factor: str, kind: LimitKind) -> LimitRule:
    found = _by(rules, factor, kind)
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------ shipped catalogue


def test_shipped_catalogue_loads_with_known_row_ids(cat: LimitCatalogue) -> None:
    assert len(cat.rules) > 50
    assert {r.row_id for r in cat.rules} <= LIMITS_ROW_IDS | STANDARD_ROW_IDS
    extra = [r for r in cat.rules if r.row_id in STANDARD_ROW_IDS]
    assert extra and all(
        r.status is Status.UNCONFIRMED and r.kind is LimitKind.STANDARD for r in extra
    )
    assert all(r.status is not Status.CONFIGURED for r in cat.rules)


@pytest.mark.parametrize(("sector", "process"), CANONICAL_POINTS)
def test_every_canonical_point_has_a_pm_rule_today(
    cat: LimitCatalogue, sector: str, process: str
) -> None:
    rules = cat.applicable(sector, process, date.today())
    assert any(r.factor == PM for r in rules), f"{sector}/{process} has no PM rule today"


def test_c1_cement_kiln_tail_national_2024(cat: LimitCatalogue) -> None:
    rules = cat.applicable("cement", "kiln_tail", date(2024, 6, 1), jurisdiction="China")
    # Row C1 (docs/limits.md#catalogue-rows): 10 / 35 / 50 at 10 % O2, hourly, ≥95 % of hours
    # per month, confirmed.
    for factor, limit in ((PM, 10), (SO2, 35), (NOX, 50)):
        rule = _one(rules, factor, LimitKind.ULTRA_LOW)
        assert rule.limit_mg_m3 == limit
        assert rule.ref_o2 == 10
        assert rule.o2_basis is O2Basis.REFERENCE
        assert rule.program == "NATL-2024-ULE"
        assert rule.row_id == "C1"
        assert rule.status is Status.CONFIRMED
        assert rule.monthly_conformity_share == 0.95
        assert rule.averaging.value == "hour"
    # Both checks exist (docs/limits.md#ultra-low-and-legal-checks): the enforceable GB 4915
    # special limit NOx 320 (C4).
    standard = _one(rules, NOX, LimitKind.STANDARD)
    assert (standard.limit_mg_m3, standard.program) == (320, "GB4915-2013-special")
    assert standard.status is Status.UNCONFIRMED


def test_n1_henan_cement_nox_depends_on_date(cat: LimitCatalogue) -> None:
    def nox(day: date) -> LimitRule | None:
        return cat.rule_for("cement", "kiln_tail", NOX, day, jurisdiction="Henan/Zhengzhou")

    before = nox(date(2020, 6, 1))
    assert before is not None
    assert (before.limit_mg_m3, before.program, before.ref_o2) == (100, "HN-2019-ULE", 10)
    after = nox(date(2024, 6, 1))
    assert after is not None
    assert (after.limit_mg_m3, after.program) == (50, "NATL-2024-ULE")


def test_validity_bounds_are_inclusive(cat: LimitCatalogue) -> None:
    # HN-2019-ULE ends 2024-01-18 (last day), NATL-2024-ULE starts 2024-01-19.
    last = cat.rule_for("cement", "kiln_tail", NOX, date(2024, 1, 18), jurisdiction="Henan")
    first = cat.rule_for("cement", "kiln_tail", NOX, date(2024, 1, 19), jurisdiction="Henan")
    assert last is not None and last.limit_mg_m3 == 100
    assert first is not None and first.limit_mg_m3 == 50
    # Before any cement ULE program (2019-01-01) only the GB 4915 standard applies.
    early = cat.applicable("cement", "kiln_tail", date(2018, 12, 31), jurisdiction="Henan")
    assert early and all(r.kind is LimitKind.STANDARD for r in early)
    # GB 16171-2012 special limits end for existing plants on 2026-12-31 (K5: 2024 text from
    # 2027-01-01 whose values are unknown), so the coke-oven standard disappears that day.
    assert cat.rule_for("coking", "coke_oven_stack", PM, date(2026, 12, 31), LimitKind.STANDARD)
    assert (
        cat.rule_for("coking", "coke_oven_stack", PM, date(2027, 1, 1), LimitKind.STANDARD) is None
    )


def test_reference_o2_by_process(cat: LimitCatalogue) -> None:
    today = date(2025, 3, 1)
    ule = LimitKind.ULTRA_LOW  # GB 28662 (standard) is on the measured basis: a conflict
    assert cat.ref_o2("steel", "sinter", today, kind=ule) == 16  # S1
    assert cat.ref_o2("steel", "pellet", today, kind=ule) == 18  # S1 (18 % unconfirmed)
    assert cat.ref_o2("coking", "coke_oven_stack", today) == 8  # K1
    assert cat.ref_o2("steel", "coke_oven", today) == 8  # S3
    assert cat.ref_o2("power", "coal_boiler", today) == 6  # B1
    assert cat.ref_o2("cement", "kiln_tail", today) == 10  # C1
    assert cat.ref_o2("cement", "cement_mill", today) is None  # C2/C6 measured
    pellet = cat.rule_for("steel", "pellet", SO2, today)
    assert pellet is not None and pellet.status is Status.UNCONFIRMED


def test_ref_o2_conflict_is_reported_not_guessed(cat: LimitCatalogue) -> None:
    # A Yangquan ≥65 t/h coal boiler: 6 % under the power-plant ULE level (B2), 9 % under
    # GB 13271 (B3). One number cannot serve both checks.
    with pytest.raises(ReferenceO2ConflictError, match="6 %"):
        cat.ref_o2("boiler", "coal_boiler", date(2022, 1, 1), jurisdiction="Shanxi/Yangquan")
    at = date(2022, 1, 1)
    assert cat.ref_o2("boiler", "coal_boiler", at, kind=LimitKind.STANDARD) == 9
    yangquan = "Shanxi/Yangquan"
    assert (
        cat.ref_o2("boiler", "coal_boiler", at, kind=LimitKind.ULTRA_LOW, jurisdiction=yangquan)
        == 6
    )
    # The Yangquan rule is a city rule: the rest of Shanxi has no boiler ULE rule.
    assert (
        cat.ref_o2("boiler", "coal_boiler", at, kind=LimitKind.ULTRA_LOW, jurisdiction="Shanxi")
        is None
    )


@pytest.mark.parametrize("sector", ["ceramics", "brick", "refractory", "industrial_furnace"])
def test_kilns_shanxi_and_henan(cat: LimitCatalogue, sector: str) -> None:
    process = "other" if sector == "industrial_furnace" else "kiln"
    # Shanxi kilns without a sector standard: 30 / 200 / 300 from 2019-01-01 (X1).
    shanxi = cat.applicable(sector, process, date(2019, 1, 1), jurisdiction="Shanxi/Taiyuan")
    assert {(r.factor, r.limit_mg_m3) for r in shanxi} == {(PM, 30), (SO2, 200), (NOX, 300)}
    assert all(r.kind is LimitKind.STANDARD and r.ref_o2 is None for r in shanxi)
    assert cat.applicable(sector, process, date(2018, 12, 31), jurisdiction="Shanxi") == []
    # Henan built-up areas: 10 / 35 / 50 from 2021-01-01 (docs/limits.md#catalogue-rows), O2
    # not stated.
    henan = cat.applicable(sector, process, date(2021, 1, 1), jurisdiction="Henan/Zhengzhou")
    assert {(r.factor, r.limit_mg_m3) for r in henan} == {(PM, 10), (SO2, 35), (NOX, 50)}
    assert all(r.o2_basis is O2Basis.NOT_STATED and r.ref_o2 is None for r in henan)
    assert all(r.applies_if and "built-up" in r.applies_if for r in henan)
    assert cat.applicable(sector, process, date(2020, 12, 31), jurisdiction="Henan") == []


def test_sanmenxia_grinding_workshop_is_a_fugitive_area_point(cat: LimitCatalogue) -> None:
    rules = cat.applicable(
        "cement", "grinding_workshop", date(2020, 3, 1), jurisdiction="Henan/Sanmenxia"
    )
    assert len(rules) == 1
    rule = rules[0]
    # 三政办〔2019〕19号: "粉磨包装车间扬尘限值达到1.5毫克/立方米" — measured, no O2 conversion.
    assert (rule.factor, rule.limit_mg_m3) == (PM, 1.5)
    assert rule.ref_o2 is None and rule.o2_basis is O2Basis.MEASURED and not rule.converts_o2
    assert rule.kind is LimitKind.FUGITIVE
    assert rule.row_id == "C13" and rule.status is Status.CONFIRMED
    assert rule.jurisdiction == "Henan/Sanmenxia"
    assert rule.source_url == "seed:000_75a716a9a7764755.txt"
    assert cat.point_type("cement", "grinding_workshop") is PointType.AREA
    # Other cities do not inherit it; the mill's stack is a stack point with PM 10, never 1.5.
    assert (
        cat.applicable(
            "cement", "grinding_workshop", date(2020, 3, 1), jurisdiction="Henan/Luoyang"
        )
        == []
    )
    assert cat.point_type("cement", "cement_mill") is PointType.STACK
    mill = cat.applicable("cement", "cement_mill", date(2025, 1, 1), jurisdiction="Henan/Sanmenxia")
    assert {r.limit_mg_m3 for r in mill} == {10}
    assert all(r.kind is not LimitKind.FUGITIVE for r in mill)


def test_unconfirmed_rows_are_flagged(cat: LimitCatalogue) -> None:
    for rule in cat.rules:
        if rule.row_id in UNCONFIRMED_ROWS:
            assert rule.status is Status.UNCONFIRMED, (rule.row_id, rule.program, rule.factor)
    flagged = {r.row_id for r in cat.select(status=Status.UNCONFIRMED)}
    assert {"C4", "K3", "B3", "G1", "S6"} <= flagged


def test_most_local_rule_wins(cat: LimitCatalogue) -> None:
    # docs/limits.md#coking-programs: Luoyang coke-oven NOx 100 (K6) is stricter than the
    # national 150 (K1).
    at = date(2025, 1, 1)
    luoyang = cat.rule_for("coking", "coke_oven_stack", NOX, at, jurisdiction="Henan/Luoyang")
    national = cat.rule_for("coking", "coke_oven_stack", NOX, at, jurisdiction="Shanxi")
    assert luoyang is not None and (luoyang.limit_mg_m3, luoyang.row_id) == (100, "K6")
    assert national is not None and (national.limit_mg_m3, national.row_id) == (150, "K1")


def test_program_selects_the_ultra_low_program(cat: LimitCatalogue) -> None:
    rules = cat.applicable(
        "coking",
        "coke_oven_stack",
        date(2025, 1, 1),
        jurisdiction="Henan/Luoyang",
        program="NATL-2024-ULE",
    )
    ule = _by(rules, NOX, LimitKind.ULTRA_LOW)
    assert [r.limit_mg_m3 for r in ule] == [150]
    assert _one(rules, NOX, LimitKind.STANDARD).limit_mg_m3 == 150  # K3 standard kept
    with pytest.raises(UnknownProgramError, match="NATL-2042"):
        cat.applicable("coking", "coke_oven_stack", date(2025, 1, 1), program="NATL-2042")


def test_unknown_point_is_a_clear_error(cat: LimitCatalogue) -> None:
    with pytest.raises(UnknownPointError, match="unknown sector 'paper'"):
        cat.applicable("paper", "boiler", date(2025, 1, 1))
    with pytest.raises(UnknownPointError, match="kiln_tail"):
        cat.applicable("cement", "kiln", date(2025, 1, 1))


def test_warning_level(cat: LimitCatalogue) -> None:
    rule = cat.rule_for("cement", "kiln_tail", NOX, date(2024, 6, 1))
    assert rule is not None
    assert rule.warning_mg_m3 == pytest.approx(40.0)  # 50 × 0.8
    tuned = load_catalogue(warning_fraction=0.9)
    rule9 = tuned.rule_for("cement", "kiln_tail", NOX, date(2024, 6, 1))
    assert rule9 is not None and rule9.warning_mg_m3 == pytest.approx(45.0)  # 50 × 0.9
    with pytest.raises(CatalogueError, match="warning_fraction"):
        load_catalogue(warning_fraction=1.5)


# ------------------------------------------------------------------------------ overrides


def test_override_replaces_the_enforceable_value(cat: LimitCatalogue) -> None:
    at = date(2024, 6, 1)
    rules = cat.applicable("cement", "kiln_tail", at, overrides={NOX: 200.0})
    standard = _one(rules, NOX, LimitKind.STANDARD)
    assert standard.limit_mg_m3 == 200 and standard.catalogue_limit_mg_m3 == 320
    assert standard.origin == "override" and standard.ref_o2 == 10
    assert standard.warning_mg_m3 == pytest.approx(160.0)  # 200 × 0.8
    assert _one(rules, NOX, LimitKind.ULTRA_LOW).limit_mg_m3 == 50  # ULE untouched
    ule = cat.rule_for(
        "cement", "kiln_tail", NOX, at, LimitKind.ULTRA_LOW, overrides={"ultra_low:a21002": 40}
    )
    assert ule is not None and ule.limit_mg_m3 == 40


def test_override_without_catalogue_standard_becomes_a_permit_rule(cat: LimitCatalogue) -> None:
    # A steel coke oven after GB 16171-2012 (K3) ends on 2026-12-31: no catalogue standard.
    rules = cat.applicable("steel", "coke_oven", date(2027, 1, 1), overrides={SO2: 50})
    permit = _one(rules, SO2, LimitKind.STANDARD)
    assert (permit.program, permit.status, permit.limit_mg_m3) == ("PERMIT", Status.CONFIGURED, 50)
    assert permit.ref_o2 == 8 and permit.o2_from_row == "S3"  # the ULE row's basis
    area = cat.applicable(
        "cement",
        "grinding_workshop",
        date(2020, 1, 1),
        jurisdiction="Henan/Sanmenxia",
        overrides={PM: 1.2},
    )
    assert [(r.kind, r.limit_mg_m3) for r in area] == [(LimitKind.FUGITIVE, 1.2)]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"a99999": 10}, "unknown factor code"),
        ({NOX: -5}, "> 0"),
        ({NOX: float("nan")}, "> 0"),
        ({"sometimes:a21002": 5}, "unknown qualifier"),
        ({"ultra_low:a21024": 5}, "no ultra_low rule"),
        ({"fugitive:a34013": 5}, "is a stack"),
    ],
)
def test_bad_overrides_are_rejected(
    cat: LimitCatalogue, overrides: dict[str, float], message: str
) -> None:
    with pytest.raises(OverrideError, match=message):
        cat.applicable("cement", "kiln_tail", date(2024, 6, 1), overrides=overrides)


def test_area_point_refuses_stack_override(cat: LimitCatalogue) -> None:
    with pytest.raises(OverrideError, match="area dust monitor"):
        cat.applicable(
            "cement",
            "grinding_workshop",
            date(2020, 1, 1),
            jurisdiction="Henan/Sanmenxia",
            overrides={"standard:a34013": 10},
        )


# --------------------------------------------------------------------------- jurisdiction


def test_jurisdiction_matching() -> None:
    assert jurisdiction_covers("China", "Shanxi/Taiyuan")
    assert jurisdiction_covers("Henan", "henan/Sanmenxia")
    assert jurisdiction_covers("Henan/Sanmenxia", "Henan/Sanmenxia")
    assert not jurisdiction_covers("Henan/Sanmenxia", "Henan")
    assert not jurisdiction_covers("Henan", "Shanxi")
    assert not jurisdiction_covers("Henan", "China")
    assert jurisdiction_for("河南省", "三门峡市") == "Henan/Sanmenxia"
    assert jurisdiction_for("Shanxi") == "Shanxi"
    assert jurisdiction_for("") is None


# ------------------------------------------------------------------------ invalid files

_GOOD_GROUP: dict[str, Any] = {
    "row_id": "C1",
    "program": "NATL-2024-ULE",
    "kind": "ultra_low",
    "sector": "cement",
    "processes": ["kiln_tail"],
    "limits": {PM: 10, NOX: 50},
    "ref_o2": 10,
    "o2_basis": "reference",
    "valid_from": date(2024, 1, 19),
    "jurisdiction": "China",
    "document": "doc",
    "source_url": "http://example.invalid",
    "status": "confirmed",
}


def _file(*groups: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 1, "rules": [copy.deepcopy(g) for g in groups]}


def _with(**changes: Any) -> dict[str, Any]:
    group = copy.deepcopy(_GOOD_GROUP)
    group.update(changes)
    return group


def test_minimal_file_is_valid_and_row_fraction_wins() -> None:
    cat = parse_catalogue(_file(_with(warning_fraction=0.5)))
    assert len(cat.rules) == 2
    rule = cat.rule_for("cement", "kiln_tail", NOX, date(2024, 2, 1))
    assert rule is not None and rule.warning_mg_m3 == pytest.approx(25.0)  # 50 × 0.5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_file(_with(limits={PM: -10})), "positive"),
        (_file(_with(limits={PM: 0})), "positive"),
        (_file(_with(valid_to=date(2023, 1, 1))), "valid_to 2023-01-01 is before valid_from"),
        (_file(_with(status="maybe")), "status"),
        (_file(_with(sector="paper")), "unknown sector 'paper'"),
        (_file(_with(processes=["kiln"])), "unknown process 'kiln'"),
        (_file(_with(limits={"a21022": 5})), "unknown factor code 'a21022'"),
        (_file(_with(o2_basis="measured")), "never be converted"),
        (_file(_with(ref_o2=None)), "needs ref_o2"),
        (_file(_with(ref_o2=21)), "ref_o2"),
        (_file(_with(kind="sometimes")), "kind"),
        (_file(_with(extra_field=1)), "extra_field"),
        (_file(), "rules"),
        ({"schema_version": 2, "rules": [_GOOD_GROUP]}, "schema_version"),
        ("just text", "<file>"),
        (
            _file(_GOOD_GROUP, _with(row_id="C1b", valid_from=date(2025, 1, 1))),
            "overlapping validity",
        ),
        (
            _file(
                _with(
                    processes=["grinding_workshop"],
                    kind="fugitive",
                    o2_basis="measured",
                    ref_o2=None,
                ),
                _with(processes=["grinding_workshop"]),
            ),
            "mixes fugitive",
        ),
    ],
)
def test_invalid_data_is_rejected_with_a_clear_message(data: object, message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(data, source="test.yaml")


def test_invalid_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(CatalogueError, match=r"cannot read limit catalogue .*missing\.yaml"):
        load_catalogue(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid YAML"):
        load_catalogue(broken)
    negative = tmp_path / "negative.yaml"
    negative.write_text(yaml.safe_dump(_file(_with(limits={NOX: -1}))), encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"negative.yaml:\n  rules.0.limits"):
        load_catalogue(negative)


def test_sequential_versions_are_accepted() -> None:
    cat = parse_catalogue(
        _file(
            _with(valid_to=date(2024, 12, 31)),
            _with(row_id="C1b", valid_from=date(2025, 1, 1), limits={NOX: 40}),
        )
    )
    old = cat.rule_for("cement", "kiln_tail", NOX, date(2024, 12, 31))
    new = cat.rule_for("cement", "kiln_tail", NOX, date(2025, 1, 1))
    assert old is not None and old.limit_mg_m3 == 50
    assert new is not None and new.limit_mg_m3 == 40


def test_rules_are_frozen(cat: LimitCatalogue) -> None:
    rule = cat.rules[0]
    with pytest.raises(ValueError, match="frozen"):
        rule.limit_mg_m3 = 1.0  # type: ignore[misc]


# ------------------------------------------------------------------------------------ CLI

runner = CliRunner()
_ENV = {"COLUMNS": "250"}


def test_cli_list_sector() -> None:
    result = runner.invoke(app, ["list", "--sector", "cement"], env=_ENV)
    assert result.exit_code == 0, result.output
    assert "SMX-2019-CEMENT" in result.output
    assert "cement/grinding_workshop" in result.output
    assert "1.5" in result.output
    assert "NATL-2024-ULE" in result.output
    assert "steel/sinter" not in result.output


def test_cli_list_status_filter() -> None:
    result = runner.invoke(app, ["list", "--status", "unconfirmed"], env=_ENV)
    assert result.exit_code == 0, result.output
    assert "GB4915-2013-special" in result.output
    assert "SMX-2019-CEMENT" not in result.output  # C13 is confirmed
    bad = runner.invoke(app, ["list", "--status", "maybe"], env=_ENV)
    assert bad.exit_code == 2


def test_cli_show_sanmenxia_workshop() -> None:
    result = runner.invoke(
        app,
        [
            "show",
            "cement",
            "grinding_workshop",
            "--date",
            "2020-05-01",
            "--jurisdiction",
            "Henan/Sanmenxia",
        ],
        env=_ENV,
    )
    assert result.exit_code == 0, result.output
    assert "(area)" in result.output
    assert "│ C13 " in result.output
    assert "1.5" in result.output and "meas." in result.output and "fugitive" in result.output


def test_cli_show_henan_kiln_by_date() -> None:
    args = ["show", "cement", "kiln_tail", "--jurisdiction", "Henan"]
    early = runner.invoke(app, [*args, "--date", "2020-06-01"], env=_ENV)
    assert early.exit_code == 0, early.output
    assert "HN-2019-ULE" in early.output and "NATL-2024-ULE" not in early.output
    assert "10 %" in early.output
    late = runner.invoke(app, [*args, "--date", "2024-06-01"], env=_ENV)
    assert "NATL-2024-ULE" in late.output and "HN-2019-ULE" not in late.output


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    unknown = runner.invoke(app, ["show", "cement", "kiln"], env=_ENV)
    assert unknown.exit_code == 1
    assert "unknown process 'kiln'" in unknown.output
    bad_date = runner.invoke(app, ["show", "cement", "kiln_tail", "--date", "2024-13-01"], env=_ENV)
    assert bad_date.exit_code == 2
    broken = tmp_path / "bad.yaml"
    broken.write_text(yaml.safe_dump(_file(_with(status="maybe"))), encoding="utf-8")
    invalid = runner.invoke(app, ["validate", str(broken)], env=_ENV)
    assert invalid.exit_code == 1
    assert "status" in invalid.output
    ok = runner.invoke(app, ["validate", str(broken.with_name("ok.yaml"))], env=_ENV)
    assert ok.exit_code == 1  # missing file


def test_cli_validate_shipped_file() -> None:
    from stackwatch.limits import DEFAULT_CATALOGUE_PATH

    result = runner.invoke(app, ["validate", str(DEFAULT_CATALOGUE_PATH)], env=_ENV)
    assert result.exit_code == 0, result.output
    assert "rules valid" in result.output


def test_for_stack_uses_registry_fields(cat: LimitCatalogue) -> None:
    from stackwatch.registry import StackInfo

    stack = StackInfo(
        stack_id="smx-gs-1-ws",
        mn="SMX0001",
        sector="cement",
        process="grinding_workshop",
        province="河南省",
        city="三门峡市",
    )
    rules = cat.for_stack(stack, date(2021, 5, 1))
    assert [(r.kind, r.limit_mg_m3) for r in rules] == [(LimitKind.FUGITIVE, 1.5)]
    # Without a province only national rules apply: no Sanmenxia workshop limit.
    anywhere = stack.model_copy(update={"province": "", "city": ""})
    assert cat.for_stack(anywhere, date(2021, 5, 1)) == []
    kiln = StackInfo(
        stack_id="ly-kiln-1",
        mn="LY0001",
        sector="cement",
        process="kiln_tail",
        province="Henan",
        city="洛阳",
        limit_overrides={"a21002": 150.0},
    )
    rules = cat.for_stack(kiln, date(2020, 6, 1))
    assert _one(rules, NOX, LimitKind.ULTRA_LOW).limit_mg_m3 == 100  # HN-2019-ULE
    assert _one(rules, NOX, LimitKind.STANDARD).limit_mg_m3 == 150  # permit override of 320
