"""Realistic ~400-character flue-gas frames for the codec and gateway benchmarks.

A boiler or kiln logger's upload, alternating CN 2011 (real-time: -Rtd, -ZsRtd, -Flag) and
CN 2051 (minute: -Min, -Avg, -Max, -ZsAvg, -Flag) with SO2 a21026, NOx a21002, dust a34013,
O2 a19001, flow a01011 and flue temperature/pressure a01012–a01013. Field loggers
send frames of this size (the real 2016 capture averages ~330 characters, newer loggers with
the -Zs fields ~400–500); built with the project's own `stackwatch.hj212.build_frames`.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames, make_qn

PASSWORD = "123456"
START = datetime(2026, 11, 2, 8, 0, tzinfo=CST)
#: (code, typical value, decimals); the pollutants get -Zs (reference-O2) values as well.
POLLUTANTS = (("a21026", 23.0, 3), ("a21002", 41.0, 3), ("a34013", 4.2, 3))
AUXILIARY = (("a19001", 9.8, 2), ("a01011", 11.4, 2), ("a01012", 85.0, 1), ("a01013", -0.25, 3))
AUXILIARY_2051 = AUXILIARY[:2]


@dataclass(frozen=True)
class FrameInput:
    """The arguments of one `build_frames` call (what a logger's encoder gets)."""

    cn: str
    mn: str
    data_time: datetime
    values: dict[str, dict[str, float]]
    flags: dict[str, str]
    qn: str
    ack: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def build(self) -> str:
        """Encode: header, CP, length, CRC (one frame: these never need splitting)."""
        (text,) = build_frames(self.cn, self.mn, PASSWORD, self.data_time, self.values,
                               flags=self.flags, qn=self.qn, ack=self.ack)
        return text


def mn_of(logger: int) -> str:
    """MN of simulated logger `logger` (14 digits, as field loggers use)."""
    return f"8888{logger:010d}"


def _jitter(rng: random.Random, value: float, decimals: int) -> float:
    return round(value * rng.uniform(0.85, 1.15), decimals)


def frame_input(rng: random.Random, mn: str, index: int, *, ack: bool) -> FrameInput:
    """Frame `index` of a logger: even = 2011 at a 30 s step, odd = 2051 of the minute."""
    t = START + timedelta(seconds=30 * index)
    values: dict[str, dict[str, float]] = {}
    if index % 2 == 0:
        cn = "2011"
        for code, typical, dec in POLLUTANTS:
            rtd = _jitter(rng, typical, dec)
            values[code] = {"Rtd": rtd, "ZsRtd": round(rtd * 1.18, dec)}
        for code, typical, dec in AUXILIARY:
            values[code] = {"Rtd": _jitter(rng, typical, dec)}
    else:
        cn = "2051"
        t = t.replace(second=0)
        for code, typical, dec in POLLUTANTS:
            dec -= 1  # minute means carry one decimal less than the instantaneous values
            avg = _jitter(rng, typical, dec)
            values[code] = {"Min": round(avg * 0.9, dec), "Avg": avg,
                            "Max": round(avg * 1.1, dec), "ZsAvg": round(avg * 1.18, dec)}
        for code, typical, dec in AUXILIARY_2051:
            values[code] = {"Avg": _jitter(rng, typical, dec)}
    flags = dict.fromkeys(values, "N")
    # QN: the upload time, one millisecond apart per frame so every QN of a logger is unique.
    qn = make_qn(t + timedelta(seconds=5, milliseconds=index % 1000))
    return FrameInput(cn=cn, mn=mn, data_time=t, values=values, flags=flags, qn=qn, ack=ack)


def flue_gas_inputs(n: int, *, loggers: int = 100, ack: bool = False,
                    seed: int = 212) -> list[FrameInput]:
    """`n` frame inputs, round-robin over `loggers` loggers (deterministic for `seed`)."""
    rng = random.Random(seed)
    return [frame_input(rng, mn_of(i % loggers), i // loggers, ack=ack) for i in range(n)]


def logger_frames(logger: int, count: int, *, ack: bool = True, seed: int = 212) -> list[bytes]:
    """`count` encoded frames of one logger, in upload order (the gateway benchmark)."""
    rng = random.Random(seed * 100_003 + logger)
    mn = mn_of(logger)
    return [frame_input(rng, mn, i, ack=ack).build().encode() for i in range(count)]


def length_summary(texts: list[str] | list[bytes]) -> dict[str, float]:
    """min / mean / max frame length in characters (bytes: the frames are ASCII)."""
    lengths = [len(t) for t in texts]
    return {"min": min(lengths), "mean": round(statistics.fmean(lengths), 1),
            "max": max(lengths)}
