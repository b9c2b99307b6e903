"""A replayed HJ 212-2025 capture with encrypted frames gives the readings of its clear twin.

The same scenario is written twice by the simulator (`frames to a file`, as `stackwatch
simulate --output` does): once with SM4-encrypted data areas, once in clear. Both files are
replayed over real loopback TCP into a gateway holding the logger's key; the readings the
worker would make of what the gateway passed on are compared.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from simulators.logger import LoggerConfig, StackSimulator
from simulators.plants import profile_for
from simulators.replay import load_replay, replay
from stackwatch.beijing_time import CST
from stackwatch.models import Reading, Verdict
from stackwatch.normalise import reading_from_raw
from stackwatch.registry import Sm4Key, StackInfo, StackRegistry
from stackwatch.settings import GatewaySettings
from streams.gateway import Gateway
from streams.gateway_sink import MemoryFrameSink

KEY = "30" * 16
MN = "41050001KL202502"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=CST)
STACK = StackInfo(stack_id="kiln", mn=MN, password="123456", sector="cement",
                  process="kiln_tail", sm4_keys=[Sm4Key(key=SecretStr(KEY))])


def capture(tmp: Path, name: str, key: str | None) -> Path:
    sim = StackSimulator(stack_id="kiln", mn=MN, password="123456",
                         profile=profile_for("cement", "kiln_tail"), seed=3, origin=T0,
                         logger=LoggerConfig(version="2025", sm4_key=key, ack=False))
    path = tmp / name
    path.write_text("".join(f.text for f in sim.frames_between(T0, T0 + timedelta(minutes=20))))
    return path


async def readings_of(path: Path) -> list[Reading]:
    sink = MemoryFrameSink()
    gateway = Gateway(settings=GatewaySettings(host="127.0.0.1", port=0),
                      registry=StackRegistry(stacks=[STACK]), sink=sink)
    await gateway.start()
    try:
        log = load_replay(path)
        assert log.errors == []
        await replay(log.frames, "127.0.0.1", gateway.port, speed=None)
        for _ in range(200):  # the last bytes are still on their way when the client closes
            if len(sink.raw) >= len(log.frames):
                break
            await asyncio.sleep(0.02)
    finally:
        await gateway.stop()
    assert sink.raw and all(r.verdict is Verdict.ACCEPTED for r in sink.raw)
    out = []
    for raw in sink.raw:
        reading = reading_from_raw(raw, {MN: STACK}.get, lambda _s, _t: 10.0)
        assert isinstance(reading, Reading), reading
        out.append(reading)
    return sorted(out, key=lambda r: (r.cn, r.data_time or r.received_at))


async def test_encrypted_capture_gives_the_readings_of_its_clear_twin(tmp_path: Path) -> None:
    encrypted = await readings_of(capture(tmp_path, "enc.h212", KEY))
    clear = await readings_of(capture(tmp_path, "clear.h212", None))
    assert len(encrypted) == len(clear) > 40
    assert [(r.cn, r.data_time, r.values) for r in encrypted] == [
        (r.cn, r.data_time, r.values) for r in clear
    ]
    assert all(r.encrypted for r in encrypted) and not any(r.encrypted for r in clear)
