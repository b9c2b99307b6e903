"""Acknowledge from the message, in a real headless Chromium (Debian's, driven by Selenium).

Everything on the path is the production code on real servers on loopback:

* three hours of a cement kiln tail's minute data (CN 2051) go into the raw topic of the
  session's Tansu broker; the **real stream worker** (`stackwatch worker run`) and the **real
  sinks** (`stackwatch sinks run`) run as subprocesses, so the alert is raised by the alert
  lifecycle and the alert, hours and minutes land in a fresh PostgreSQL database;
* the **real dispatcher** (`run_dispatcher` + the durable outbox `PgOutbox` + its
  `OutboxWorker` + `Notifier` + `EmailSender`, wired as `stackwatch alerts dispatch` wires
  them) consumes the alerts topic and mails the alert through a **real SMTP server** (aiosmtpd)
  on loopback, with a link signed for the recipient;
* the **real page** (`sinks.ack_page`, with the Kafka publisher and PostgreSQL stores the CLI
  wires) serves the link; Chromium opens it from the caught mail, the evidence is checked,
  the form is submitted, and the worker's lifecycle turns the command into the ``ack`` event
  that the sinks write back.

Hand arithmetic (the stack is a cement kiln tail: reference O2 10 %, SO2 ultra-low limit
35 mg/m³; every minute reports O2 = 12.0 %, so converted = measured × (21 − 10)/(21 − 12) =
measured × 11/9):

* hours 07 and 08 (Beijing): even minutes SO2 9, odd minutes 18 → converted 11 and 22 →
  hour mean 16.5 (measured 13.5);
* hour 09: even minutes 45, odd minutes 54 → converted 55 and 66; minutes 09:10 and 09:11 are
  never sent (comm. gap), so 58 minutes remain, 29 even and 29 odd → measured mean
  (29·45 + 29·54)/58 = 49.5, converted (29·55 + 29·66)/58 = 60.5 > 35 → ``hour_exceedance``
  at 10:00, 60.5 / 35 = 172.857… % → "172.9 %"; all 58 minutes flag N;
* minutes 10:00–10:04 close hour 09 (grace 3 min).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiosmtpd.controller import Controller
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from embedded.ports import free_port
from embedded.process import terminate
from sinks.ack_api import KafkaAckPublisher, PgAlertRepository
from sinks.ack_page import PgAckPageStore, create_ack_page_app
from sinks.notifiers import EmailSender, Notifier, PgDeliveryLog, WebhookSender
from sinks.outbox import OutboxWorker, PgOutbox
from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames
from stackwatch.models import AlertEvent, EventKind, RawFrame, Verdict
from stackwatch.notify import NotifyConfig, NotifyScheduler
from stackwatch.notify.ack_link import AckLinks, AckLinkSigner
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.settings import SmtpSettings
from streams.alert_dispatcher import AlertDispatcher, run_dispatcher
from tests.e2e.pipeline import migrate
from tests.kafka_topics import create_topics

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DOCS_IMG = REPO / "docs" / "img" / "ack-page.png"
#: `STACKWATCH_DOCS_SCREENSHOTS=1 .venv/bin/pytest tests/e2e/test_ack_page.py` also writes the
#: evidence page to docs/img/ack-page.png (the README's screenshot).
DOCS_ENV = "STACKWATCH_DOCS_SCREENSHOTS"

SO2, O2 = "a21026", "a19001"
DAY = datetime(2026, 11, 2, tzinfo=CST)
FIRST, LAST = DAY + timedelta(hours=7), DAY + timedelta(hours=10, minutes=4)
GAP = {DAY + timedelta(hours=9, minutes=10), DAY + timedelta(hours=9, minutes=11)}
HOUR = DAY + timedelta(hours=9)
STACK = StackInfo(
    stack_id="ts-kiln-2", mn="MNACKPAGE000001", password="pw-ack", sector="cement",
    process="kiln_tail", name="2#窑尾", plant="唐山某水泥有限公司", city="唐山",
)
RECIPIENT, ADDRESS = "王工", "wang@plant.example"
SECRET = "e2e-ack-link-secret-0123456789abcdef"
LIFETIME = timedelta(hours=72)
REASON = "布袋除尘器破损，已停窑更换 / bag filter torn, kiln stopped for replacement"
PARTITIONS = 2
TOPICS = ["raw", "readings", "minute", "hour", "day", "alerts", "alert_commands", "deadletter",
          "gateway_commands"]


def so2_measured(t: datetime) -> float:
    exceed = t.hour == 9
    if t.minute % 2 == 0:
        return 45.0 if exceed else 9.0
    return 54.0 if exceed else 18.0


def frames() -> list[tuple[str, RawFrame]]:
    """Minute frames 07:00–10:04 (Beijing) without 09:10 and 09:11, received 1 min later."""
    out: list[tuple[str, RawFrame]] = []
    t = FIRST
    while t <= LAST:
        if t not in GAP:
            (text,) = build_frames(
                "2051", STACK.mn, "pw-ack", t,
                {SO2: {"Avg": so2_measured(t)}, O2: {"Avg": 12.0}},
                flags={SO2: "N", O2: "N"}, now=t,
            )
            rx = t + timedelta(minutes=1)
            out.append((STACK.mn, RawFrame(text=text, received_at=rx, peer="replay:ack.log",
                                           mn=STACK.mn, cn="2051", verdict=Verdict.ACCEPTED)))
        t += timedelta(minutes=1)
    return out


# ------------------------------------------------------------------------------- servers


class MailCatcher:
    """aiosmtpd handler: keeps messages and wakes the test's event loop on each."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.messages: list[EmailMessage] = []
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.loop.call_soon_threadsafe(self.arrived.set)
        return "250 OK"


@dataclass
class Processes:
    """The worker and sinks subprocesses of this test (stopped by PID at the end)."""

    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs.append(subprocess.Popen(
            [sys.executable, "-c", "from commands import main; main()", *args],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        ))

    def alive(self) -> None:
        for proc in self.procs:
            assert proc.poll() is None, f"{proc.args!r} exited {proc.returncode}\n{self.logs()}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.tmp.glob("*.log")))


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    made = Processes(tmp_path)
    yield made
    for proc in made.procs:
        if proc.poll() is None:
            terminate(proc.pid, grace=10.0)
            proc.wait(timeout=15)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    """Debian's Chromium through Debian's chromedriver; Selenium Manager stays offline."""
    assert shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER), "chromium/chromedriver missing"
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--hide-scrollbars", "--window-size=900,1200", "--lang=zh-CN",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    port = free_port()
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@pytest.fixture
async def stopper() -> AsyncIterator[list[Any]]:
    """Async clean-ups (servers, producers, tasks), run in reverse order."""
    cleanups: list[Any] = []
    yield cleanups
    for cleanup in reversed(cleanups):
        await cleanup()


# ------------------------------------------------------------------------------- helpers


async def wait_for_rows(dsn: str, sql: str, params: dict[str, Any], want: Any,
                        procs: Processes, limit_s: float = 240.0) -> None:
    """Poll PostgreSQL until ``sql`` returns ``want`` (the sinks write asynchronously)."""
    deadline = time.monotonic() + limit_s
    got: Any = None
    while time.monotonic() < deadline:
        procs.alive()
        with psycopg.connect(dsn, autocommit=True) as conn:
            got = conn.execute(sql, params).fetchall()
        if got == want:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{sql} → {got!r}, wanted {want!r}\n{procs.logs()}")


async def ack_event_on_topic(bootstrap: str, topic: str, alert_id: str) -> AlertEvent:
    """The first ``ack`` event of ``alert_id`` on the alerts topic (read from the start)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    event = AlertEvent.model_validate_json(r.value or b"")
                    if event.alert_id == alert_id and event.kind is EventKind.ACK:
                        return event
    finally:
        await consumer.stop()


def text_of(driver: webdriver.Chrome, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def text_after_load(driver: webdriver.Chrome, css: str) -> str:
    """Text of ``css`` once the page that has it has loaded (a form post navigates
    asynchronously after the click returns)."""
    wait = WebDriverWait(driver, 60)
    element = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))
    return str(element.text)


def full_page_screenshot(driver: webdriver.Chrome, path: Path) -> None:
    """Resize the window so its viewport fits the page's content, then capture (headless
    Chromium captures the viewport only)."""
    driver.set_window_size(900, 400)
    height = 16 + int(driver.execute_script(
        "const m = document.querySelector('main');"
        "return Math.ceil(m.getBoundingClientRect().bottom + window.scrollY)"))
    driver.set_window_size(900, height)
    inner = int(driver.execute_script("return window.innerHeight"))
    driver.set_window_size(900, height + (height - inner))
    assert driver.save_screenshot(str(path)), path


# --------------------------------------------------------------------------------- test


@pytest.mark.timeout(600)
async def test_acknowledge_from_a_mailed_link_in_chromium(
    kafka_bootstrap: str, pg_database: str, unique_topic: str, tmp_path: Path,
    processes: Processes, browser: webdriver.Chrome, stopper: list[Any],
) -> None:
    dsn = pg_database
    topics = {t: f"{unique_topic}.{t}" for t in TOPICS}
    await create_topics(kafka_bootstrap, topics.values(), PARTITIONS)
    await asyncio.to_thread(migrate, dsn)
    registry = tmp_path / "registry.yaml"
    StackRegistry(stacks=[STACK]).dump(registry)

    # -- the real worker and sinks
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKWATCH_")}
    env |= {f"STACKWATCH_TOPICS__{t.upper()}": n for t, n in topics.items()}
    env |= {
        "PYTHONPATH": str(REPO),
        "STACKWATCH_TOPICS__PARTITIONS": str(PARTITIONS),
        "STACKWATCH_STREAMS__TICK_INTERVAL_S": "1",
        "STACKWATCH_STREAMS__IDLE_FLUSH_S": "86400",  # no wall-clock flush: exact hours only
        "STACKWATCH_DATA_DIR": str(tmp_path / "data"),
        "STACKWATCH_LOG_LEVEL": "INFO",
    }
    group = unique_topic.replace(".", "-")
    processes.spawn("worker", [
        "worker", "run", "--bootstrap", kafka_bootstrap, "--web-port", str(free_port()),
        "--metrics-port", str(free_port()), "--app-id", f"{group}-worker",
        "--registry", str(registry), "--data-dir", str(tmp_path / "faust-worker"),
    ], env)
    processes.spawn("sinks", [
        "sinks", "run", "--bootstrap", kafka_bootstrap, "--database-url", dsn,
        "--metrics-port", "0", "--app-id", f"{group}-sinks", "--registry", str(registry),
        "--data-dir", str(tmp_path / "faust-sinks"),
    ], env | {"STACKWATCH_WEB_PORT": str(free_port())})

    # -- the real SMTP server, page server and dispatcher
    mail = MailCatcher(asyncio.get_running_loop())
    smtp_port = free_port()
    controller = Controller(mail, hostname="127.0.0.1", port=smtp_port)
    controller.start()

    async def stop_smtp() -> None:
        controller.stop()

    stopper.append(stop_smtp)
    signer = AckLinkSigner(SECRET, lifetime=LIFETIME)
    publisher = KafkaAckPublisher(kafka_bootstrap, topics["alert_commands"])
    await publisher.start()
    stopper.append(publisher.stop)
    page = create_ack_page_app(
        signer=signer, evidence=PgAckPageStore(dsn), uses=PgAckPageStore(dsn),
        repository=PgAlertRepository(dsn), publisher=publisher,
        grafana_url="http://grafana.test:3000",
    )
    runner, page_port = await _serve(page)
    stopper.append(runner.cleanup)
    base_url = f"http://127.0.0.1:{page_port}"

    config = NotifyConfig.model_validate({
        "recipients": [{"name": RECIPIENT, "channels": [{"type": "email", "address": ADDRESS}]}],
        "groups": [{"name": "duty", "members": [RECIPIENT]}],
        "routes": [{"name": "tangshan", "match": {"rules": ["hour_exceedance"]},
                    "group": "duty", "group_by": ["alert_id"], "group_wait": "0s"}],
    })
    delivery_log = PgDeliveryLog(dsn)
    client = httpx.AsyncClient(timeout=10)
    notifier = Notifier(
        config, base_url="http://grafana.test:3000", webhook=WebhookSender(client),
        email=EmailSender(SmtpSettings(host="127.0.0.1", port=smtp_port, starttls=False)),
        delivery_log=delivery_log, ack_links=AckLinks(signer, base_url),
    )
    # as `stackwatch alerts dispatch` wires it: decisions go to the durable outbox, its
    # worker sends them
    outbox = PgOutbox(dsn, name=f"{group}-notify")
    stop = asyncio.Event()
    dispatcher = asyncio.create_task(run_dispatcher(
        AlertDispatcher(NotifyScheduler(config), outbox, registry=StackRegistry(stacks=[STACK])),
        bootstrap=kafka_bootstrap,
        topic=topics["alerts"], group_id=f"{group}-notify", tick_interval_s=0.5, stop=stop,
        start_from="earliest", worker=OutboxWorker(outbox, notifier), worker_interval_s=0.5,
    ))

    async def stop_dispatcher() -> None:
        stop.set()
        await dispatcher
        await outbox.close()
        await client.aclose()
        await delivery_log.close()

    stopper.append(stop_dispatcher)

    # -- the data
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=1)
    await producer.start()
    try:
        for mn, frame in frames():
            await producer.send(topics["raw"], frame.model_dump_json().encode(), key=mn.encode())
        await producer.flush()
    finally:
        await producer.stop()

    # -- the mail arrives (the lifecycle raised the alert, the dispatcher sent it)
    while not mail.messages:
        processes.alive()
        try:
            await asyncio.wait_for(mail.arrived.wait(), timeout=5)
        except TimeoutError:
            continue
    [message] = mail.messages
    assert message["To"] == ADDRESS
    assert message["Subject"] == (
        "[新告警 NEW · 告警 ALARM] 小时均值超过超低排放限值 hourly mean above the ultra-low "
        "emission limit — 唐山某水泥有限公司 2#窑尾 a21026"
    )
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    found = re.search(r"确认 / Acknowledge: (https?://\S+)", text)
    assert found is not None, text
    link = found.group(1)
    assert link.startswith(f"{base_url}/ack/")
    alert_id = link.split("/")[-2]
    # the Grafana link opens Stack detail at the stack, 6 h before the hour to 1 h after:
    # 09:00–10:00 Beijing = 01:00–02:00 UTC on 2026-11-02 → from 19:00 UTC Nov 1, to 03:00 UTC
    start_ms = int(datetime(2026, 11, 1, 19, 0, tzinfo=UTC).timestamp()) * 1000
    end_ms = int(datetime(2026, 11, 2, 3, 0, tzinfo=UTC).timestamp()) * 1000
    assert (f"/d/stackwatch-stack/stack-detail?var-stack=ts-kiln-2&from={start_ms}&to={end_ms}"
            in text)

    # -- the sinks have written the alert, the hour and its 58 minutes
    await wait_for_rows(dsn, "SELECT rule, state FROM alerts WHERE alert_id = %(id)s",
                        {"id": alert_id}, [("hour_exceedance", "active")], processes)
    await wait_for_rows(
        dsn, "SELECT valid_count, total_count FROM hour_aggregates "
             "WHERE stack_id = %(s)s AND factor = %(f)s AND period_start = %(h)s",
        {"s": STACK.stack_id, "f": SO2, "h": HOUR}, [(58, 58)], processes)
    await wait_for_rows(
        dsn, "SELECT count(*) FROM minute_aggregates WHERE stack_id = %(s)s AND factor = %(f)s "
             "AND period_start >= %(h)s AND period_start < %(h)s + interval '1 hour'",
        {"s": STACK.stack_id, "f": SO2, "h": HOUR}, [(58,)], processes)

    # -- open the link in Chromium: the evidence
    def open_evidence() -> dict[str, str]:
        browser.get(link)
        cells = {name: text_of(browser, f"#{name}") for name in (
            "hour-value", "limit", "percent", "o2-ref", "o2-measured", "hour-measured",
            "hour-converted", "hour-valid", "minute-count", "minute-valid", "flags",
            "recipient", "period")}
        cells["title"] = text_of(browser, "h1")
        cells["bars"] = str(len(browser.find_elements(By.CSS_SELECTOR, "#trend svg rect")))
        cells["by-fields"] = str(len(browser.find_elements(By.NAME, "by")))
        full_page_screenshot(browser, tmp_path / "ack-page.png")
        browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
        cells["trend"] = text_of(browser, "#trend-table")
        return cells

    shown = await asyncio.to_thread(open_evidence)
    assert shown["title"] == (
        "小时均值超过超低排放限值 / hourly mean above the ultra-low emission limit")
    assert shown["hour-value"] == "60.5 mg/m³"
    assert shown["limit"] == "35 mg/m³"
    assert shown["percent"] == "172.9 % of limit"
    assert shown["o2-ref"] == "10 %"
    assert shown["o2-measured"] == "12 %"
    assert shown["hour-measured"] == "49.5 mg/m³"
    assert shown["hour-converted"] == "60.5 mg/m³（O2 10 %）"
    assert shown["hour-valid"] == "58 / 58"
    assert (shown["minute-count"], shown["minute-valid"]) == ("58", "58")
    assert shown["flags"] == "N 正常 normal × 58"
    assert shown["period"] == "2026-11-02 09:00 – 2026-11-02 10:00"
    assert shown["recipient"] == RECIPIENT
    assert shown["by-fields"] == "0"  # who acknowledges is the link's recipient, not a field
    # the trend: hours 07, 08 at 16.5 and the alert's hour 09 at 60.5 (converted)
    assert re.findall(r"2026-11-02 (\d\d):00 ([\d.]+)", shown["trend"]) == [
        ("07", "16.5"), ("08", "16.5"), ("09", "60.5")]
    assert shown["bars"] == "3"

    # -- submit without a reason: Chromium's `required` keeps it; blanks reach the server: 422
    def submit(reason: str) -> str:
        area = browser.find_element(By.ID, "reason")
        area.clear()
        if reason:
            area.send_keys(reason)
        browser.find_element(By.ID, "submit").click()
        return str(browser.find_element(By.ID, "reason").get_property("validationMessage")
                   if not reason else "")

    validation = await asyncio.to_thread(submit, "")
    assert validation != ""  # the browser refused to send an empty required field
    assert await asyncio.to_thread(lambda: browser.current_url) == link
    await asyncio.to_thread(submit, "   ")
    error = await asyncio.to_thread(text_after_load, browser, "#error")
    assert "A reason is required" in error and "请填写确认原因" in error
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM ack_link_uses").fetchone() == (0,)

    # -- submit with a reason: acknowledged as the link's recipient
    watch = asyncio.create_task(ack_event_on_topic(kafka_bootstrap, topics["alerts"], alert_id))
    await asyncio.to_thread(submit, REASON)
    done = await asyncio.to_thread(text_after_load, browser, "#done")
    await asyncio.to_thread(full_page_screenshot, browser, tmp_path / "ack-done.png")
    assert f"已确认 Acknowledged — {RECIPIENT}" in done and REASON in done
    event = await asyncio.wait_for(watch, timeout=120)  # guard only: a hang must fail
    assert (event.ack_by, event.ack_reason, event.acknowledged) == (RECIPIENT, REASON, True)
    await wait_for_rows(
        dsn, "SELECT state, acked_by, ack_reason FROM alerts WHERE alert_id = %(id)s",
        {"id": alert_id}, [("acknowledged", RECIPIENT, REASON)], processes)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(
            "SELECT alert_id, recipient, reason FROM ack_link_uses").fetchall() == [
            (alert_id, RECIPIENT, REASON)]

    # -- the same link again: refused as used (also after the page is restarted: PostgreSQL)
    await runner.cleanup()
    page2 = create_ack_page_app(
        signer=AckLinkSigner(SECRET, lifetime=LIFETIME), evidence=PgAckPageStore(dsn),
        uses=PgAckPageStore(dsn), repository=PgAlertRepository(dsn), publisher=publisher,
    )
    runner2 = web.AppRunner(page2)
    await runner2.setup()
    await web.TCPSite(runner2, "127.0.0.1", page_port).start()
    stopper.append(runner2.cleanup)

    def refused(url: str, shot: str | None = None) -> tuple[str, str]:
        browser.get(url)
        box = browser.find_element(By.ID, "refused")
        if shot:
            full_page_screenshot(browser, tmp_path / shot)
        return str(box.get_attribute("data-reason")), str(box.text)

    reason, page_text = await asyncio.to_thread(refused, link, "ack-refused.png")
    assert reason == "reused"
    assert "链接已使用" in page_text and "Link already used" in page_text
    token = link.rsplit("/", 1)[1]
    # Change a character inside the signature, not the last one: the last base64url character
    # carries padding bits, and some changes to it decode to the same bytes.
    i = len(link) - 5
    tampered = link[:i] + ("A" if link[i] != "A" else "B") + link[i + 1 :]
    assert (await asyncio.to_thread(refused, tampered))[0] == "forged"
    other_alert = link.replace(alert_id, "00000000-0000-5000-8000-000000000000")
    assert (await asyncio.to_thread(refused, other_alert))[0] == "forged"
    old = AckLinks(signer, base_url).url(alert_id, RECIPIENT,
                                         datetime.now(UTC) - LIFETIME - timedelta(hours=1))
    expired_reason, expired_text = await asyncio.to_thread(refused, old)
    assert expired_reason == "expired" and "Link expired" in expired_text

    # HTTP statuses and headers of the same refusals
    async with httpx.AsyncClient() as http:
        for url, status in ((link, 410), (tampered, 403), (other_alert, 403), (old, 410)):
            resp = await http.get(url)
            assert resp.status_code == status, url
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
        replay = await http.post(link, data={"token": token, "reason": "again"})
        assert replay.status_code == 410
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM ack_link_uses").fetchone() == (1,)

    if os.environ.get(DOCS_ENV) == "1":
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "ack-page.png", DOCS_IMG)
    assert (tmp_path / "ack-page.png").stat().st_size > 20_000
    assert (tmp_path / "ack-refused.png").exists() and (tmp_path / "ack-done.png").exists()
    print(f"screenshots: {tmp_path}/ack-page.png, ack-done.png, ack-refused.png")


async def test_alerts_api_serves_the_page_when_links_are_enabled(
    kafka_bootstrap: str, pg_database: str, tmp_path: Path, processes: Processes,
) -> None:
    """`stackwatch alerts api` (the CLI production runs) serves the page on its own port."""
    await asyncio.to_thread(migrate, pg_database)
    api_port, page_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKWATCH_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "STACKWATCH_API_TOKEN": "t0ken-for-tests-0123456789",
        "STACKWATCH_ACK_PAGE__ENABLED": "true",
        "STACKWATCH_ACK_PAGE__SECRET": SECRET,
        "STACKWATCH_ACK_PAGE__PORT": str(page_port),
        "STACKWATCH_DATA_DIR": str(tmp_path / "data"),
    }
    processes.spawn("api", ["alerts", "api", "--port", str(api_port), "--dsn", pg_database,
                            "--bootstrap", kafka_bootstrap], env)
    base = f"http://127.0.0.1:{page_port}"
    async with httpx.AsyncClient() as http:
        while True:  # until the page listens (or the process died: `alive` fails)
            processes.alive()
            try:
                health = await http.get(f"{base}/healthz")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.2)
        assert health.json() == {"status": "ok"}
        unknown = "00000000-0000-5000-8000-0000000000ff"
        token = AckLinkSigner(SECRET, lifetime=LIFETIME).issue(unknown, RECIPIENT,
                                                                datetime.now(UTC))
        missing = await http.get(f"{base}/ack/{unknown}/{token}")
        assert missing.status_code == 404  # a valid link, but no such alert in the database
        assert "未找到告警" in missing.text and "Alert not found" in missing.text
        other = AckLinkSigner("x" * 40, lifetime=LIFETIME).issue(unknown, RECIPIENT,
                                                                  datetime.now(UTC))
        forged = await http.get(f"{base}/ack/{unknown}/{other}")
        assert forged.status_code == 403
        assert "链接无效" in forged.text and "Invalid link" in forged.text
        assert forged.headers["Referrer-Policy"] == "no-referrer"
        # the bearer API is still there, on its own port
        api = await http.get(f"http://127.0.0.1:{api_port}/alerts")
        assert api.status_code == 401
