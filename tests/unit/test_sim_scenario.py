"""Scenario files, process profiles and the registry a scenario emits."""

from __future__ import annotations

import random
import statistics
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from simulators.noise import AR1
from simulators.plants import PROFILES, profile_for
from simulators.scenario import ScenarioError, load_scenario, parse_scenario
from stackwatch.beijing_time import CST
from stackwatch.registry import SECTOR_PROCESSES, StackRegistry


def minimal(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t",
        "start": "2026-01-05T00:00:00+08:00",
        "plants": [{"name": "P", "city": "Anyang", "stacks": [
            {"stack_id": "a", "mn": "MN1", "sector": "steel", "process": "sinter"}]}],
    }
    data.update(over)
    return data


def test_every_canonical_process_has_a_profile() -> None:
    expected = {(s, p) for s, procs in SECTOR_PROCESSES.items() for p in procs}
    assert set(PROFILES) == expected


def test_reference_o2_per_process() -> None:
    # The brief: kiln tail 10, sinter 16, pellet 18, coke oven 8, power 6 / industrial coal
    # boilers 9, glass 8; none elsewhere.
    assert profile_for("cement", "kiln_tail").ref_o2 == 10
    assert profile_for("steel", "sinter").ref_o2 == 16
    assert profile_for("steel", "pellet").ref_o2 == 18
    assert profile_for("coking", "coke_oven_stack").ref_o2 == 8
    assert profile_for("power", "coal_boiler").ref_o2 == 6
    assert profile_for("boiler", "coal_boiler").ref_o2 == 9
    assert profile_for("glass", "furnace").ref_o2 == 8
    assert profile_for("cement", "cement_mill").ref_o2 is None
    assert profile_for("cement", "grinding_workshop").factors == ("a34013",)


def test_ar1_has_the_requested_stationary_sd() -> None:
    x = AR1(random.Random(3), phi=0.9, sigma=2.0)
    values = [x.step() for _ in range(40_000)]
    # Stationary sd = sigma by construction; 40 000 correlated draws estimate it within ~5 %.
    assert statistics.pstdev(values) == pytest.approx(2.0, rel=0.06)
    with pytest.raises(ValueError):
        AR1(random.Random(1), phi=1.0, sigma=1.0)


def test_shipped_demo_scenario() -> None:
    sc = load_scenario("demo")
    ids = {s.stack_id: s for s in sc.all_stacks()}
    assert {(s.sector, s.process) for s in ids.values()} == {
        ("cement", "cement_mill"), ("cement", "grinding_workshop"), ("steel", "sinter"),
        ("steel", "pellet"), ("coking", "coke_oven_stack"), ("aluminium", "electrolysis"),
        ("carbon", "anode_baking")}
    kinds = {e.kind for e in sc.events}
    assert {"exceedance", "comm_loss"} <= kinds
    reg = sc.registry()
    assert len(reg.stacks) == 7
    sinter = reg.by_mn(ids["ay-sinter-1"].mn)
    assert sinter is not None and sinter.city == "Anyang" and sinter.password_matches("123456")


def test_registry_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "reg.yaml"
    load_scenario("demo").registry().dump(path)
    loaded = StackRegistry.load(path)
    assert len(loaded.stacks) == 7
    assert all((s.password_hash or "").startswith("scrypt$16384$8$1$") for s in loaded.stacks)
    assert all(s.password is None for s in loaded.stacks)


def test_national_generates_n_unique_stacks() -> None:
    sc = load_scenario("national", count=50)
    stacks = sc.all_stacks()
    assert len(stacks) == 50
    assert len({s.mn for s in stacks}) == 50
    again = load_scenario("national", count=50)
    assert [s.model_dump() for s in again.all_stacks()] == [s.model_dump() for s in stacks]


def test_naive_start_is_beijing_time() -> None:
    sc = parse_scenario(minimal(start="2026-01-05 08:00:00"))
    assert sc.resolved_start() == datetime(2026, 1, 5, 8, 0, tzinfo=CST)


@pytest.mark.parametrize(("data", "message"), [
    (minimal(plants=[{"name": "P", "stacks": [
        {"stack_id": "a", "mn": "MN1", "sector": "steel", "process": "kiln"}]}]),
     "unknown process 'kiln'"),
    (minimal(plants=[{"name": "P", "stacks": [
        {"stack_id": "a", "mn": "MN1", "sector": "steel", "process": "sinter"},
        {"stack_id": "b", "mn": "MN1", "sector": "steel", "process": "pellet"}]}]),
     "duplicate mn 'MN1'"),
    (minimal(events=[{"kind": "exceedance", "stack": "zzz", "start": "1m", "duration": "1m",
                      "peak": 50}]), "unknown stack 'zzz'"),
    (minimal(events=[{"kind": "fault", "stack": "a", "start": "1x", "duration": "1m"}]),
     "events.0.start"),
    (minimal(speed=-1), "speed"),
    (minimal(plants=[]), "needs 'plants' or 'generate'"),
    (minimal(plants=[{"name": "P", "stacks": [
        {"stack_id": "a", "mn": "M" * 25, "sector": "steel", "process": "sinter"}]}]),
     "plants.0.stacks.0.mn"),
    (minimal(colour="red"), "colour"),
])
def test_scenario_validation_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data)


def test_scenario_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(listy)


def test_demo_first_hour_exceeds_the_sinter_so2_limit() -> None:
    from stackwatch.hj212 import decode_frame

    origin = datetime(2026, 1, 5, 9, 0, tzinfo=CST)
    sinter = next(s for s in load_scenario("demo").simulators(origin)
                  if s.stack_id == "ay-sinter-1")
    hour = [f for f in sinter.frames_between(origin, origin + timedelta(hours=1))
            if f.cn == "2061"]
    # Trip 2–52 min at 120 mg/m³ (16 % O2): the hourly mean is far above 35 (row S1,
    # docs/limits.md#catalogue-rows).
    assert decode_frame(hour[0].text).values["a21026"]["ZsAvg"] > 35
