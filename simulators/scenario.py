"""Scenario files: which plants and stacks to simulate, how their loggers behave, what goes wrong.

A scenario is YAML validated by pydantic (`Scenario`); `load_scenario` accepts a shipped name
(`demo`, `national`) or a path and turns every problem into a `ScenarioError` whose message
names the offending field (e.g. `plants.0.stacks.1.process: unknown process 'kiln'`).
A scenario emits the `StackRegistry` of its stacks, so the gateway accepts exactly them.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from simulators.events import Duration, Event
from simulators.logger import LoggerConfig, StackSimulator
from simulators.plants import PROFILES, profile_for
from stackwatch.beijing_time import CST
from stackwatch.registry import SECTOR_PROCESSES, Sm4Key, StackInfo, StackRegistry

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario file is missing, unreadable or invalid (message says where and why)."""


class StackSpec(BaseModel):
    """One simulated stack (or workshop dust point) and its data logger."""

    model_config = ConfigDict(extra="forbid")

    stack_id: str = Field(min_length=1, max_length=64)
    mn: str = Field(min_length=1, max_length=24, pattern=r"^[0-9A-Za-z_\-]+$")
    password: str = Field(default="123456", min_length=1, max_length=9)
    name: str = ""
    sector: str
    process: str
    seed: int = 0
    ref_o2: float | Literal["none"] | None = Field(
        default=None,
        description="Reference O2 % the logger converts to; None = the process default, "
        "'none' = no conversion (no -Zs fields).",
    )
    baselines: dict[str, float] = Field(
        default_factory=dict, description="Override baseline concentrations, code → mg/m³."
    )
    flow_m3h: float | None = Field(default=None, gt=0, description="Design flow, m³/h.")
    logger: LoggerConfig | None = Field(default=None, description="Overrides scenario default.")

    @model_validator(mode="after")
    def _check(self) -> StackSpec:
        if self.sector not in SECTOR_PROCESSES:
            raise ValueError(
                f"unknown sector {self.sector!r}; one of {', '.join(SECTOR_PROCESSES)}"
            )
        if self.process not in SECTOR_PROCESSES[self.sector]:
            raise ValueError(
                f"unknown process {self.process!r} for sector {self.sector!r}; one of "
                f"{', '.join(SECTOR_PROCESSES[self.sector])}"
            )
        allowed = set(profile_for(self.sector, self.process).baselines)
        for code in self.baselines:
            if code not in allowed:
                raise ValueError(
                    f"baseline for {code!r} but a {self.sector}/{self.process} point reports "
                    f"only {sorted(allowed)}"
                )
        if isinstance(self.ref_o2, float) and not 0 <= self.ref_o2 < 21:
            raise ValueError("ref_o2 must be in [0, 21)")
        return self

    def effective_ref_o2(self) -> float | None:
        """The reference O2 the logger applies."""
        if self.ref_o2 == "none":
            return None
        if isinstance(self.ref_o2, float):
            return self.ref_o2
        return profile_for(self.sector, self.process).ref_o2


class PlantSpec(BaseModel):
    """A plant and its monitored points."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    city: str = ""
    province: str = ""
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    stacks: list[StackSpec] = Field(min_length=1)


class GenerateSpec(BaseModel):
    """Programmatic stacks for load tests (`national`): `count` stacks over the seed cities."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=200, ge=1, le=100_000)
    seed: int = 1
    mn_prefix: str = Field(default="SIMN", pattern=r"^[0-9A-Za-z]{1,10}$")


# Seed cities (Henan, Shanxi, Hebei), lat/lon of the city centre.
CITIES: tuple[tuple[str, str, float, float], ...] = (
    ("Zhengzhou", "Henan", 34.75, 113.63), ("Luoyang", "Henan", 34.62, 112.45),
    ("Anyang", "Henan", 36.10, 114.39), ("Sanmenxia", "Henan", 34.77, 111.20),
    ("Pingdingshan", "Henan", 33.77, 113.19), ("Jiaozuo", "Henan", 35.22, 113.24),
    ("Xinxiang", "Henan", 35.30, 113.93), ("Taiyuan", "Shanxi", 37.87, 112.55),
    ("Xinzhou", "Shanxi", 38.42, 112.73), ("Changzhi", "Shanxi", 36.20, 113.12),
    ("Linfen", "Shanxi", 36.09, 111.52), ("Yuncheng", "Shanxi", 35.03, 111.00),
    ("Shijiazhuang", "Hebei", 38.04, 114.51), ("Tangshan", "Hebei", 39.63, 118.18),
    ("Handan", "Hebei", 36.63, 114.54), ("Xingtai", "Hebei", 37.07, 114.50),
)


class Scenario(BaseModel):
    """A complete simulation: plants, stacks, logger behaviour, timing and events."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    start: datetime | Literal["now"] = Field(
        default="now", description="Simulated start; naive times are Beijing time (UTC+8)."
    )
    align: Literal["minute", "hour"] = Field(
        default="minute", description="With start 'now': floor the start to this unit."
    )
    speed: float | Literal["fast"] = Field(
        default=60.0, description="Simulated seconds per wall second, or 'fast' (no pacing)."
    )
    duration: Duration | None = Field(default=None, description="Simulated span; None = open.")
    logger: LoggerConfig = Field(default_factory=LoggerConfig)
    plants: list[PlantSpec] = Field(default_factory=list)
    generate: GenerateSpec | None = None
    events: list[Event] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if isinstance(self.start, datetime) and (self.start.second or self.start.microsecond):
            raise ValueError("start must be on a whole minute (loggers sample on the clock grid)")
        if isinstance(self.speed, float) and self.speed <= 0:
            raise ValueError("speed must be > 0 or 'fast'")
        if self.duration is not None and self.duration <= timedelta(0):
            raise ValueError("duration must be positive")
        if not self.plants and self.generate is None:
            raise ValueError("a scenario needs 'plants' or 'generate'")
        seen_id: set[str] = set()
        seen_mn: set[str] = set()
        for stack in self.all_stacks():
            if stack.stack_id in seen_id:
                raise ValueError(f"duplicate stack_id {stack.stack_id!r}")
            if stack.mn in seen_mn:
                raise ValueError(f"duplicate mn {stack.mn!r}")
            seen_id.add(stack.stack_id)
            seen_mn.add(stack.mn)
        by_id = {s.stack_id: s for s in self.all_stacks()}
        for i, event in enumerate(self.events):
            if event.stack != "*" and event.stack not in by_id and self.generate is None:
                raise ValueError(f"events.{i}: unknown stack {event.stack!r}")
            target = by_id.get(event.stack)
            if target is not None and event.factor is not None:
                factors = profile_for(target.sector, target.process).factors
                if event.factor not in factors:
                    raise ValueError(
                        f"events.{i}: stack {event.stack!r} does not report {event.factor!r}"
                    )
        return self

    def all_stacks(self) -> list[StackSpec]:
        """Every stack of every plant."""
        return [s for p in self.plants for s in p.stacks]

    def resolved_start(self, now: datetime | None = None) -> datetime:
        """Aware start time; 'now' = the current minute/hour, naive = Beijing time."""
        if self.start == "now":
            current = (now or datetime.now(CST)).astimezone(CST)
            current = current.replace(second=0, microsecond=0)
            return current.replace(minute=0) if self.align == "hour" else current
        assert isinstance(self.start, datetime)
        return self.start if self.start.tzinfo is not None else self.start.replace(tzinfo=CST)

    def expanded(self, count: int | None = None) -> Scenario:
        """The scenario with its `generate` block turned into plants (count overridable)."""
        if self.generate is None:
            return self
        spec = self.generate if count is None else self.generate.model_copy(update={"count": count})
        plants = [*self.plants, *generate_plants(spec)]
        data = self.model_dump(mode="python", exclude={"generate", "plants"})
        data["plants"] = [p.model_dump(mode="python") for p in plants]
        return Scenario.model_validate(data)

    def registry(self) -> StackRegistry:
        """The stack registry the gateway needs to accept these loggers (HJ 212 MN + PW)."""
        rows: list[StackInfo] = []
        for plant in self.plants:
            for s in plant.stacks:
                logger = s.logger or self.logger
                keys = [Sm4Key(key=SecretStr(logger.sm4_key))] if logger.sm4_key else []
                rows.append(StackInfo(
                    stack_id=s.stack_id, mn=s.mn, password=SecretStr(s.password),
                    name=s.name or s.stack_id, plant=plant.name, city=plant.city,
                    province=plant.province, sector=s.sector, process=s.process,
                    lat=plant.lat, lon=plant.lon, rtd_interval_s=logger.rtd_interval_s,
                    min_interval_min=logger.min_interval_min, sm4_keys=keys,
                    encryption="required" if keys else "optional",
                ))
        return StackRegistry(stacks=rows)

    def simulators(self, origin: datetime | None = None) -> list[StackSimulator]:
        """One deterministic `StackSimulator` per stack, all starting at `origin`."""
        start = origin or self.resolved_start()
        return [
            StackSimulator(
                stack_id=s.stack_id, mn=s.mn, password=s.password,
                profile=profile_for(s.sector, s.process), seed=s.seed, origin=start,
                logger=s.logger or self.logger, events=self.events, ref_o2=s.effective_ref_o2(),
                baselines=s.baselines or None, flow_m3h=s.flow_m3h,
            )
            for s in self.all_stacks()
        ]


# Relative frequency of generated points per (sector, process), roughly the mix of a
# northern-China regional platform (boilers and cement most common).
_WEIGHTS: dict[tuple[str, str], int] = {key: 1 for key in PROFILES} | {
    ("boiler", "coal_boiler"): 8, ("boiler", "gas_boiler"): 6, ("power", "coal_boiler"): 4,
    ("cement", "kiln_tail"): 4, ("cement", "cement_mill"): 4, ("steel", "sinter"): 3,
    ("coking", "coke_oven_stack"): 3, ("brick", "kiln"): 3, ("ceramics", "kiln"): 2,
}


def generate_plants(spec: GenerateSpec) -> list[PlantSpec]:
    """`spec.count` stacks in plants of 1–4 stacks, deterministic for `spec.seed`."""
    rng = random.Random(spec.seed)
    keys = list(_WEIGHTS)
    weights = [_WEIGHTS[k] for k in keys]
    plants: list[PlantSpec] = []
    n = 0
    while n < spec.count:
        city, province, lat, lon = CITIES[rng.randrange(len(CITIES))]
        sector, process = rng.choices(keys, weights)[0]
        size = min(rng.randint(1, 4), spec.count - n)
        stacks: list[StackSpec] = []
        for _ in range(size):
            n += 1
            stacks.append(StackSpec(
                stack_id=f"{spec.mn_prefix.lower()}-{n:06d}", mn=f"{spec.mn_prefix}{n:010d}",
                sector=sector, process=process, seed=spec.seed * 1_000_003 + n,
                name=f"{process} #{len(stacks) + 1}",
            ))
        plants.append(PlantSpec(
            name=f"{city} {sector} plant {len(plants) + 1}", city=city, province=province,
            lat=round(lat + rng.uniform(-0.2, 0.2), 4), lon=round(lon + rng.uniform(-0.2, 0.2), 4),
            stacks=stacks,
        ))
    return plants


def _format_validation(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(part) for part in e["loc"]) or "(top level)"
        lines.append(f"{where}: {e['msg']}")
    return "; ".join(lines)


def parse_scenario(data: object, *, source: str = "<scenario>", count: int | None = None
                   ) -> Scenario:
    """Validate scenario data (a parsed YAML mapping) and expand generated stacks."""
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ScenarioError(f"{source}: a scenario must be a YAML mapping, got {kind}")
    try:
        return Scenario.model_validate(data).expanded(count)
    except ValidationError as err:
        raise ScenarioError(f"{source}: {_format_validation(err)}") from None


def load_scenario(name_or_path: str | Path, *, count: int | None = None) -> Scenario:
    """Load a shipped scenario by name (`demo`, `national`) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        raise ScenarioError(f"scenario {str(name_or_path)!r} not found (shipped: {shipped})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ScenarioError(f"{path}: cannot read scenario: {err}") from None
    return parse_scenario(data, source=str(path), count=count)
