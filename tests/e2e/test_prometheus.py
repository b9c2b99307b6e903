"""A real Prometheus scrapes the running gateway, worker, sinks and notifier, and every PromQL
query of the Pipeline health dashboard parses and returns series through its HTTP API.

Prometheus is Debian's `prometheus` binary (scripts/test.sh installs it), on loopback with a
1 s scrape interval. Traffic while it scrapes: a kiln logger uploads SO2 far above its limit
(provisional and hourly exceedance alerts, which the notifier sends to a local webhook that
fails once, so a retry is counted), a frame with a bad CRC (a rejected frame), and an
acknowledgement of an alert that does not exist (a worker dead letter). Grafana's variables are
expanded as Grafana would for "All": `$instance` → `.*`, `$__rate_interval` → 4 × the scrape
interval (Grafana's rule: max(4 × scrape interval, interval + scrape interval)).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaProducer

from embedded.children import Child, spawn_child, stop_child
from embedded.ports import free_port
from embedded.prometheus import (
    RULES_FILE,
    RunningPrometheus,
    prometheus_binary,
    start_prometheus,
)
from simulators.client import LoggerClient
from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames, decode_frame
from stackwatch.models import AckCommand
from stackwatch.registry import StackInfo, StackRegistry
from tests.e2e.pipeline import Pipeline, fresh_database, migrate, wait_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "json" / "Operations" / "pipeline-health.json"
SO2, O2 = "a21026", "a19001"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=CST)
KILN = StackInfo(stack_id="prom-kiln", mn="41010001PROM001", password="k-pw", sector="cement",
                 process="kiln_tail", province="河南", city="郑州")
SCRAPE_S = 1
RATE_INTERVAL = f"{4 * SCRAPE_S}s"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel/target id, PromQL) of every Prometheus target and variable of the dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if "expr" in target:
                    out.append((f"{panel['id']}/{target['refId']}", target["expr"]))

    walk(dash["panels"])
    for var in dash["templating"]["list"]:
        query = var.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if isinstance(text, str) and text.startswith("label_values("):
            # label_values(<selector>, <label>) is Grafana's; the series behind it is PromQL.
            out.append((f"var/{var['name']}", text[len("label_values("):].rsplit(",", 1)[0]))
    return out


def expand(expr: str) -> str:
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace('"$instance"', '".*"')


class Webhook:
    """A local webhook that fails the first delivery (HTTP 500) and accepts the rest."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.Response(status=500 if len(self.received) == 1 else 200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def frames() -> list[str]:
    out = []
    for m in range(62):
        t = T0 + timedelta(minutes=m)
        values = {SO2: {"Avg": 80.0 + m % 3}, O2: {"Avg": 10.0}}
        (text,) = build_frames("2051", KILN.mn, "k-pw", t, values, ack=True, now=t)
        out.append(text)
    return out


async def prometheus_query(client: httpx.AsyncClient, expr: str) -> dict[str, Any]:
    reply = await client.get("/api/v1/query", params={"query": expr})
    body: dict[str, Any] = reply.json()
    return body


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, pg_dsn: str,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    binary = prometheus_binary()
    assert binary, "prometheus missing: `apt-get install prometheus` (scripts/test.sh does it)"
    tmp = tmp_path_factory.mktemp("prometheus")
    dsn = fresh_database(pg_dsn)
    migrate(dsn)
    ports = {"gateway": free_port(), "worker": free_port(), "sinks": free_port()}
    pipe = Pipeline(bootstrap=kafka_bootstrap, dsn=dsn, prefix=f"p.{uuid.uuid4().hex[:10]}",
                    tmp=tmp, registry=StackRegistry(stacks=[KILN]), metrics_ports=ports)
    webhook = Webhook()
    notifier: Child | None = None
    prometheus: RunningPrometheus | None = None
    try:
        await webhook.start()
        await pipe.start_all()
        routes = tmp / "routes.yaml"
        routes.write_text(yaml.safe_dump({
            "defaults": {"group_wait": "0s", "group_interval": "5s", "repeat_interval": "1h"},
            "recipients": [{"name": "hook", "channels": [
                {"type": "webhook", "format": "json",
                 "url": f"http://127.0.0.1:{webhook.port}/hook"}]}],
            "groups": [{"name": "desk", "members": ["hook"]}],
            "routes": [{"name": "all", "group": "desk"}],
        }))
        ports["notifier"] = free_port()
        notifier = spawn_child(
            "notifier",
            ["alerts", "dispatch", "--routes", str(routes), "--registry",
             str(pipe.registry_file), "--tick", "1", "--metrics-port", str(ports["notifier"])],
            pipe.env(), tmp / "logs",
        )
        for name, port in ports.items():
            child = notifier if name == "notifier" else pipe.children[name]
            await wait_port(port, child, limit_s=60.0)

        prometheus = await asyncio.to_thread(
            start_prometheus, binary, tmp / "prom", [f"127.0.0.1:{p}" for p in ports.values()],
            scrape_s=SCRAPE_S, rule_files=[RULES_FILE],
        )
        client = httpx.AsyncClient(base_url=prometheus.url, timeout=10)

        logger = LoggerClient("127.0.0.1", pipe.gateway_port, mn=KILN.mn, ack_timeout=5,
                              retries=100)
        for text in frames():
            await logger.send(text, ack=True, qn=decode_frame(text).qn)
        bad = frames()[0][:-6] + "0000\r\n"  # the CRC of another frame
        await logger.send(bad, ack=False, qn=None)
        await logger.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            ack = AckCommand(alert_id="no-such-alert", stack_id=KILN.stack_id, by="tester",
                             reason="test", at=T0)
            await producer.send_and_wait(pipe.topics["alert_commands"],
                                         ack.model_dump_json().encode(),
                                         key=KILN.stack_id.encode())
        finally:
            await producer.stop()

        results: dict[str, dict[str, Any]] = {}
        queries = dashboard_queries()
        for _ in range(90):  # until every query has series (the notifier's retry takes ~1 s)
            results = {key: await prometheus_query(client, expand(q)) for key, q in queries}
            if len(webhook.received) >= 2 and all(
                r.get("data", {}).get("result") for r in results.values()
            ):
                break
            await asyncio.sleep(1.0)
        rules = (await client.get("/api/v1/rules")).json()
        await client.aclose()
        yield {"queries": queries, "results": results, "rules": rules,
               "webhook": webhook.received}
    finally:
        if prometheus is not None:
            prometheus.stop()
        if notifier is not None:
            stop_child(notifier)
        pipe.stop_all()
        await webhook.stop()


def test_the_dashboard_has_prometheus_queries(run: dict[str, Any]) -> None:
    # 24 panel targets and the $instance variable's series.
    assert len(run["queries"]) == 25


def test_every_pipeline_health_query_parses_and_returns_series(run: dict[str, Any]) -> None:
    failures = {
        key: (query, run["results"][key].get("error") or "no series")
        for key, query in run["queries"]
        if run["results"][key].get("status") != "success"
        or not run["results"][key]["data"]["result"]
    }
    assert not failures


def test_every_process_is_scraped(run: dict[str, Any]) -> None:
    (up,) = [r for key, r in run["results"].items() if key.startswith("17/")]
    assert {s["value"][1] for s in up["data"]["result"]} == {"1"}
    assert len(up["data"]["result"]) == 4  # gateway, worker, sinks, notifier


def test_the_notifier_retried_and_delivered(run: dict[str, Any]) -> None:
    assert len(run["webhook"]) >= 2  # the first delivery failed (500) and was retried


def test_prometheus_loaded_the_pipeline_alert_rules(run: dict[str, Any]) -> None:
    groups = run["rules"]["data"]["groups"]
    names = {r["name"] for g in groups for r in g["rules"]}
    in_file = {r["alert"] for g in yaml.safe_load(RULES_FILE.read_text())["groups"]
               for r in g["rules"]}
    assert names == in_file and len(names) == 11  # every rule of the file, as written
    assert all(r["health"] == "ok" for g in groups for r in g["rules"])
