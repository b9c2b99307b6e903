"""Plant / stack process models: what the analysers of one stack would read every few seconds.

One `ProcessProfile` per canonical (sector, process) of `stackwatch.registry.SECTOR_PROCESSES`
gives the typical flue-gas state (O2, flow, temperature, humidity, pressure) and baseline
concentrations. `PlantModel` turns a profile and a seed into a deterministic stream of
analyser readings: a daily load profile drives flow, temperature and O2, and concentrations
move with a shared combustion AR(1) term plus their own AR(1) noise (so SO2, NOx and O2 are
correlated as in a real flue).

Baseline concentrations are *reference-O2* values where the process has a reference O2
(HJ 212-2017 App. D eq. 28, `C_zs = C × (21 − O2_ref)/(21 − O2)`), otherwise measured values.
They sit at or below half the ultra-low limit (docs/limits.md#catalogue-rows), and
normal-operation noise is bounded, so in normal operation values stay below the limit; exceedances
come from events.

Units follow HJ 212-2017 App. B.2: a00000 flow m³/s (as printed; `-Cou` m³), a01011 m/s,
a01012 °C, a01013 kPa, a01014 %, a19001 %, a34013/a21026/a21002 mg/m³ (`-Cou` kg).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from simulators.noise import AR1, bounded
from stackwatch.beijing_time import CST

PM, SO2, NOX, O2 = "a34013", "a21026", "a21002", "a19001"
FLOW, VELOCITY, TEMP, PRESSURE, HUMIDITY = "a00000", "a01011", "a01012", "a01013", "a01014"
POLLUTANTS: tuple[str, ...] = (PM, SO2, NOX)
FLUE_PARAMS: tuple[str, ...] = (O2, FLOW, VELOCITY, TEMP, PRESSURE, HUMIDITY)

LoadShape = Literal["continuous", "offpeak", "cyclic", "flat"]


@dataclass(frozen=True)
class ProcessProfile:
    """Typical operating state of one process's stack (simulation data, not limits)."""

    sector: str
    process: str
    o2: float
    """Typical measured O2 % (dry) at full load."""
    ref_o2: float | None
    """Reference O2 % the data logger converts to (-Zs fields); None = measured basis."""
    pm: float | None
    so2: float | None
    nox: float | None
    flow_m3h: float = 200_000.0
    area_m2: float = 5.0
    temp_c: float = 80.0
    humidity_pct: float = 8.0
    pressure_kpa: float = -0.25
    load: LoadShape = "continuous"
    flue_params: bool = True
    """False for an area/workshop dust monitor that reports only a34013."""
    ref_o2_unconfirmed: bool = False
    """The reference O2 is UNCONFIRMED (docs/limits.md#reference-o2-by-source; kept as data,
    overridable per stack)."""

    @property
    def baselines(self) -> dict[str, float]:
        """Pollutant code → baseline concentration (mg/m³) for the factors this point measures."""
        out: dict[str, float] = {}
        for code, value in ((PM, self.pm), (SO2, self.so2), (NOX, self.nox)):
            if value is not None:
                out[code] = value
        return out

    @property
    def factors(self) -> tuple[str, ...]:
        """Every factor code the logger of this point reports, in upload order."""
        return tuple(self.baselines) + (FLUE_PARAMS if self.flue_params else ())


def _p(sector: str, process: str, o2: float, ref: float | None, pm: float | None,
       so2: float | None, nox: float | None, **kw: object) -> ProcessProfile:
    return ProcessProfile(sector, process, o2, ref, pm, so2, nox, **kw)  # type: ignore[arg-type]


# Reference O2 per the brief and docs/limits.md#reference-o2-by-source; flagged where UNCONFIRMED.
PROFILES: dict[tuple[str, str], ProcessProfile] = {
    (p.sector, p.process): p
    for p in (
        _p("power", "coal_boiler", 6.5, 6.0, 3.0, 14.0, 24.0, flow_m3h=1_800_000, area_m2=50,
           temp_c=50, humidity_pct=12),
        _p("boiler", "coal_boiler", 8.5, 9.0, 4.0, 14.0, 24.0, flow_m3h=150_000, area_m2=3.2,
           temp_c=55, humidity_pct=11, ref_o2_unconfirmed=True),
        _p("boiler", "gas_boiler", 4.0, None, 1.5, 2.0, 20.0, flow_m3h=40_000, area_m2=0.8,
           temp_c=90, humidity_pct=15),
        _p("cement", "kiln_tail", 11.0, 10.0, 4.0, 12.0, 22.0, flow_m3h=600_000, area_m2=12.5,
           temp_c=110, humidity_pct=8),
        _p("cement", "kiln_head", 20.0, None, 4.0, None, None, flow_m3h=500_000, area_m2=12,
           temp_c=100, humidity_pct=2),
        _p("cement", "coal_mill", 16.0, None, 4.0, None, None, flow_m3h=120_000, area_m2=3,
           temp_c=70, humidity_pct=6),
        _p("cement", "cement_mill", 20.5, None, 3.0, None, None, flow_m3h=150_000, area_m2=3.5,
           temp_c=70, humidity_pct=3, load="offpeak"),
        _p("cement", "packing", 20.8, None, 3.0, None, None, flow_m3h=40_000, area_m2=1.2,
           temp_c=35, humidity_pct=2, load="offpeak"),
        _p("cement", "grinding_workshop", 20.9, None, 0.8, None, None, flue_params=False,
           load="offpeak"),
        _p("cement", "dryer", 12.0, 8.0, 4.0, 20.0, 60.0, flow_m3h=80_000, area_m2=2,
           temp_c=90, humidity_pct=12),
        _p("steel", "sinter", 17.0, 16.0, 4.0, 14.0, 22.0, flow_m3h=1_200_000, area_m2=28,
           temp_c=130, humidity_pct=10),
        _p("steel", "pellet", 18.0, 18.0, 4.0, 14.0, 22.0, flow_m3h=700_000, area_m2=16,
           temp_c=120, humidity_pct=9, ref_o2_unconfirmed=True),
        _p("steel", "coke_oven", 9.0, 8.0, 4.0, 12.0, 65.0, flow_m3h=250_000, area_m2=6.5,
           temp_c=180, humidity_pct=8, ref_o2_unconfirmed=True),
        _p("steel", "reheating_furnace", 8.0, None, 4.0, 18.0, 80.0, flow_m3h=200_000,
           area_m2=5, temp_c=150, humidity_pct=9),
        _p("steel", "hot_blast_stove", 4.0, None, 3.0, 18.0, 70.0, flow_m3h=300_000,
           area_m2=7, temp_c=160, humidity_pct=7),
        _p("steel", "converter", 19.0, None, 5.0, None, None, flow_m3h=600_000, area_m2=14,
           temp_c=60, humidity_pct=5, load="cyclic"),
        _p("steel", "own_coal_boiler", 6.5, 6.0, 3.0, 20.0, 35.0, flow_m3h=500_000,
           area_m2=12, temp_c=50, humidity_pct=12),
        _p("steel", "own_gas_boiler", 3.5, 3.0, 2.0, 15.0, 35.0, flow_m3h=200_000, area_m2=5,
           temp_c=120, humidity_pct=12),
        _p("steel", "own_gas_turbine", 15.0, 15.0, 2.0, 10.0, 35.0, flow_m3h=900_000,
           area_m2=20, temp_c=95, humidity_pct=10),
        _p("steel", "own_oil_boiler", 3.5, 3.0, 4.0, 20.0, 40.0, flow_m3h=100_000, area_m2=2.5,
           temp_c=140, humidity_pct=9),
        _p("steel", "other", 19.0, None, 4.0, None, None, flow_m3h=300_000, area_m2=7,
           temp_c=60, humidity_pct=3),
        _p("coking", "coke_oven_stack", 9.0, 8.0, 4.0, 12.0, 65.0, flow_m3h=250_000,
           area_m2=6.5, temp_c=180, humidity_pct=8),
        _p("coking", "charging", 20.0, None, 4.0, 20.0, None, flow_m3h=150_000, area_m2=4,
           temp_c=60, humidity_pct=6, load="cyclic"),
        _p("coking", "pushing", 20.0, None, 4.0, 10.0, None, flow_m3h=250_000, area_m2=6,
           temp_c=70, humidity_pct=5, load="cyclic"),
        _p("coking", "dry_quenching", 19.0, None, 4.0, 20.0, None, flow_m3h=150_000,
           area_m2=4, temp_c=80, humidity_pct=4),
        _p("coking", "tube_furnace", 10.0, None, 4.0, 20.0, 100.0, flow_m3h=60_000,
           area_m2=1.6, temp_c=160, humidity_pct=8),
        _p("coking", "crushing", 20.9, None, 4.0, None, None, flow_m3h=60_000, area_m2=1.6,
           temp_c=30, humidity_pct=2, load="offpeak"),
        _p("coking", "ammonium_sulfate_drying", 20.0, None, 5.0, None, None, flow_m3h=30_000,
           area_m2=0.8, temp_c=60, humidity_pct=15),
        _p("aluminium", "electrolysis", 20.5, None, 3.0, 35.0, None, flow_m3h=1_000_000,
           area_m2=25, temp_c=90, humidity_pct=3),
        _p("carbon", "anode_baking", 16.0, None, 4.0, 35.0, 50.0, flow_m3h=200_000, area_m2=5,
           temp_c=90, humidity_pct=8),
        _p("glass", "furnace", 8.0, 8.0, 4.0, 20.0, 80.0, flow_m3h=120_000, area_m2=3,
           temp_c=160, humidity_pct=10, ref_o2_unconfirmed=True),
        _p("coal_chemical", "boiler", 8.0, 9.0, 4.0, 14.0, 24.0, flow_m3h=400_000, area_m2=10,
           temp_c=55, humidity_pct=11, ref_o2_unconfirmed=True),
        _p("ceramics", "kiln", 16.0, None, 5.0, 20.0, 60.0, flow_m3h=80_000, area_m2=2,
           temp_c=110, humidity_pct=9),
        _p("brick", "kiln", 17.0, None, 6.0, 40.0, 60.0, flow_m3h=100_000, area_m2=2.5,
           temp_c=80, humidity_pct=12),
        _p("refractory", "kiln", 15.0, None, 5.0, 25.0, 60.0, flow_m3h=60_000, area_m2=1.6,
           temp_c=120, humidity_pct=6),
        _p("industrial_furnace", "other", 15.0, None, 5.0, 30.0, 60.0, flow_m3h=60_000,
           area_m2=1.6, temp_c=120, humidity_pct=6),
    )
}


def profile_for(sector: str, process: str) -> ProcessProfile:
    """The profile of a canonical (sector, process); KeyError with a clear message otherwise."""
    try:
        return PROFILES[(sector, process)]
    except KeyError:
        raise KeyError(f"no simulator profile for sector={sector!r} process={process!r}") from None


@dataclass
class Reading:
    """One instantaneous analyser reading of every factor (before events are applied)."""

    at: datetime
    values: dict[str, float]
    flags: dict[str, str] = field(default_factory=dict)


def load_factor(shape: LoadShape, at: datetime) -> float:
    """Deterministic production load (0..1) at a local time of day.

    continuous: kilns/sinter/boilers, a shallow day/night swing (0.85–0.97).
    offpeak: Henan cement mills run mostly in valley-tariff hours (22:00–08:00).
    cyclic: coke charging/pushing ground stations, a push every 12 min lasting 3 min.
    """
    local = at.astimezone(CST)
    hour = local.hour + local.minute / 60 + local.second / 3600
    if shape == "flat":
        return 0.9
    if shape == "continuous":
        return 0.91 + 0.06 * math.sin((hour - 8.0) / 24.0 * 2 * math.pi)
    if shape == "offpeak":
        return 0.95 if hour >= 22 or hour < 8 else 0.75
    minute_in_cycle = (local.minute % 12) + local.second / 60
    return 1.0 if minute_in_cycle < 3 else 0.55


class PlantModel:
    """Stateful, seeded generator of analyser readings for one stack.

    Call `read(at)` with strictly increasing sample instants; the same seed and the same
    instants give the same readings.
    """

    def __init__(
        self,
        profile: ProcessProfile,
        seed: int,
        *,
        baselines: dict[str, float] | None = None,
        flow_m3h: float | None = None,
    ) -> None:
        self.profile = profile
        self.baselines = dict(profile.baselines)
        if baselines:
            self.baselines.update(baselines)
        self.flow_m3h = flow_m3h if flow_m3h is not None else profile.flow_m3h
        rng = random.Random(seed)
        self._load = AR1(rng, phi=0.995, sigma=0.02)
        self._combustion = AR1(rng, phi=0.98, sigma=0.10)
        self._own = {code: AR1(rng, phi=0.95, sigma=0.08) for code in self.baselines}
        self._o2 = AR1(rng, phi=0.97, sigma=0.25)
        self._flow = AR1(rng, phi=0.97, sigma=0.02)
        self._temp = AR1(rng, phi=0.99, sigma=1.0)
        self._press = AR1(rng, phi=0.9, sigma=0.02)
        self._hum = AR1(rng, phi=0.99, sigma=0.3)

    def read(self, at: datetime) -> Reading:
        """The analysers' instantaneous readings at `at` (rounded to analyser resolution)."""
        p = self.profile
        load = bounded(load_factor(p.load, at) + self._load.step(), 0.3, 1.0)
        comb = self._combustion.step()
        values: dict[str, float] = {}
        o2 = bounded(p.o2 + 1.5 * (0.9 - load) + 2.0 * comb * 0.3 + self._o2.step(),
                     max(0.5, p.o2 - 3.0), 20.9)
        for code, base in self.baselines.items():
            noise = bounded(1.0 + 0.5 * comb + self._own[code].step(), 0.6, 1.5)
            conc = base * (0.7 + 0.4 * load) * noise
            if p.ref_o2 is not None:
                # Baselines are reference-O2 values: back-convert to what the analyser measures.
                conc = conc * (21.0 - o2) / (21.0 - p.ref_o2)
            values[code] = round(conc, 3)
        if p.flue_params:
            flow_m3h = self.flow_m3h * (0.35 + 0.65 * load) * (1.0 + self._flow.step())
            flow = flow_m3h / 3600.0
            values[O2] = round(o2, 2)
            values[FLOW] = round(flow, 2)
            values[VELOCITY] = round(flow / p.area_m2, 2)
            values[TEMP] = round(p.temp_c + 8.0 * (load - 0.9) + self._temp.step(), 1)
            values[PRESSURE] = round(p.pressure_kpa + self._press.step(), 3)
            values[HUMIDITY] = round(bounded(p.humidity_pct + self._hum.step(), 0.5, 40.0), 1)
        return Reading(at=at, values=values, flags=dict.fromkeys(values, "N"))
