"""The acknowledgement page a notification links to (aiohttp, server-rendered, 中文/English).

``GET /ack/{alert_id}/{token}`` verifies the signed link (``stackwatch.notify.ack_link``) and
shows the alert's evidence from PostgreSQL: the hourly value against its limit and O2 basis,
the minutes and flags behind that period (``minute_aggregates``), and a trend of the last
hours (``hour_aggregates``, an inline SVG drawn here: no JavaScript). Its form posts the token
back in a hidden field — the token is the credential, so there is no session and no CSRF
cookie — with a required reason. ``POST`` acknowledges through the same command path as the
API and the CLI (:func:`sinks.ack_api.publish_ack` → alert-commands topic → lifecycle), with
``by`` = the link's recipient, never a form field.

Refusals are pages, not stack traces: a forged token (bad signature, another alert) is 403, an
expired one 410, a used one 410 (each used jti is stored in ``ack_link_uses`` in the same
transaction that publishes the command, so a double submit or a restart cannot reuse it), an
unknown alert 404, a cleared or already acknowledged alert 409.

Every response carries a restrictive Content-Security-Policy (inline styles only), frame
denial and ``Referrer-Policy: no-referrer`` so the token in the URL never leaks to another
site.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import jinja2
import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sinks.ack_api import AckPublisher, AlertNotOpenError, AlertRepository, publish_ack
from sinks.db import build_conninfo
from stackwatch.beijing_time import CST
from stackwatch.hj212.codes import factor_info
from stackwatch.models import AlertEvent
from stackwatch.notify.ack import AckRequest
from stackwatch.notify.ack_link import (
    AckLinkClaims,
    AckLinkSigner,
    LinkExpiredError,
    LinkForgedError,
)
from stackwatch.notify.render import alert_dashboard_url, format_number

__all__ = [
    "FLAG_LABELS",
    "MAX_REASON",
    "AlertEvidence",
    "EvidenceSource",
    "HourFacts",
    "LinkUseStore",
    "MinuteFacts",
    "PgAckPageStore",
    "TrendChart",
    "TrendPoint",
    "create_ack_page_app",
    "trend_chart",
]

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
O2 = "a19001"
MAX_REASON = 1000
MAX_MINUTES = 1440
"""Minute rows shown for one alert (a day alert's whole day; an hour alert has 60)."""

FLAG_LABELS: dict[str, str] = {
    "N": "正常 normal",
    "F": "停运 stopped",
    "M": "维护 maintenance",
    "S": "手工输入 manual value",
    "D": "故障 fault",
    "C": "校准 calibrating",
    "T": "超测定上限 over range",
    "B": "通讯异常 comm. fault",
}
"""HJ 212-2017 Table 8 data flags, as the dashboards label them."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


# ------------------------------------------------------------------------------- evidence


class HourFacts(BaseModel):
    """The ``hour_aggregates`` row of the alert's hour (measured and converted means)."""

    model_config = ConfigDict(frozen=True)

    period_start: AwareDatetime
    mean: float | None
    zs_mean: float | None
    ref_o2: float | None
    valid_count: int
    total_count: int
    flag: str | None
    valid: bool
    invalid_reason: str | None = None
    limit_mg_m3: float | None = None
    limit_program: str | None = None


class MinuteFacts(BaseModel):
    """One ``minute_aggregates`` row behind the alert's period."""

    model_config = ConfigDict(frozen=True)

    period_start: AwareDatetime
    mean: float | None
    zs_mean: float | None
    flag: str | None
    valid: bool


class TrendPoint(BaseModel):
    """One hour of the trend, on the limit's basis (converted when the limit has a ref O2)."""

    model_config = ConfigDict(frozen=True)

    period_start: AwareDatetime
    value: float | None
    valid: bool


class AlertEvidence(BaseModel):
    """Everything the page shows about one alert."""

    model_config = ConfigDict(frozen=True)

    event: AlertEvent = Field(description="The alert's latest lifecycle event.")
    state: str = Field(description="alerts.state: active, acknowledged or cleared.")
    acked_by: str | None = None
    acked_at: AwareDatetime | None = None
    ack_reason: str | None = None
    stack_name: str | None = None
    plant: str | None = None
    city: str | None = None
    hour: HourFacts | None = None
    o2_measured: float | None = Field(default=None, description="Mean measured O2 (%).")
    minutes: list[MinuteFacts] = Field(default_factory=list)
    trend: list[TrendPoint] = Field(default_factory=list)

    @property
    def flag_counts(self) -> dict[str, int]:
        """Minutes per data flag, in HJ 212 table order."""
        counts: dict[str, int] = {}
        for m in self.minutes:
            key = m.flag or "?"
            counts[key] = counts.get(key, 0) + 1
        order = list(FLAG_LABELS)
        return dict(sorted(counts.items(), key=lambda kv: (
            order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


class EvidenceSource(Protocol):
    """Reads an alert's evidence."""

    async def evidence(self, alert_id: str, trend_hours: int) -> AlertEvidence | None:
        """The alert (any state) with its evidence; None when unknown."""


class LinkUseStore(Protocol):
    """Remembers which links (jti) have acknowledged."""

    async def used(self, jti: str) -> bool:
        """True when this link has already acknowledged."""

    async def use(
        self, claims: AckLinkClaims, reason: str, action: Callable[[], Awaitable[Any]]
    ) -> bool:
        """Record the link as used and run ``action`` atomically: False (and ``action`` not
        run) when it was used already; if ``action`` raises, the link stays unused."""


_ALERT_SQL = """
SELECT a.state, a.acked_by, a.acked_at, a.ack_reason, s.name AS stack_name, s.plant, s.city,
       (SELECT e.payload FROM alert_events e WHERE e.alert_id = a.alert_id
        ORDER BY e.seq DESC LIMIT 1) AS payload
FROM alerts a LEFT JOIN stacks s ON s.stack_id = a.stack_id
WHERE a.alert_id = %(id)s
"""
_HOUR_SQL = """
SELECT period_start, mean, zs_mean, ref_o2, valid_count, total_count, flag, valid,
       invalid_reason, limit_mg_m3, limit_program
FROM hour_aggregates
WHERE stack_id = %(stack)s AND factor = %(factor)s AND period_start = %(start)s
"""
_O2_SQL = """
SELECT avg(mean) AS o2 FROM minute_aggregates
WHERE stack_id = %(stack)s AND factor = %(o2)s AND valid
  AND period_start >= %(start)s AND period_start < %(end)s
"""
_MINUTES_SQL = """
SELECT period_start, mean, zs_mean, flag, valid FROM minute_aggregates
WHERE stack_id = %(stack)s AND factor = %(factor)s
  AND period_start >= %(start)s AND period_start < %(end)s
ORDER BY period_start LIMIT %(limit)s
"""
_TREND_SQL = """
SELECT period_start,
       CASE WHEN %(converted)s THEN coalesce(zs_mean, mean) ELSE mean END AS value, valid
FROM hour_aggregates
WHERE stack_id = %(stack)s AND factor = %(factor)s
  AND period_start >= %(since)s AND period_start < %(until)s
ORDER BY period_start
"""
_USED_SQL = "SELECT 1 FROM ack_link_uses WHERE jti = %(jti)s"
_USE_SQL = """
INSERT INTO ack_link_uses (jti, alert_id, recipient, reason, issued_at)
VALUES (%(jti)s, %(alert_id)s, %(recipient)s, %(reason)s, %(issued_at)s)
ON CONFLICT (jti) DO NOTHING RETURNING jti
"""


class PgAckPageStore:
    """Evidence and used links in PostgreSQL (a short connection per request: a page opened
    a few times a day does not need a pool)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def _connect(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        return await psycopg.AsyncConnection.connect(
            build_conninfo(self.dsn), autocommit=True, row_factory=dict_row
        )

    async def evidence(self, alert_id: str, trend_hours: int) -> AlertEvidence | None:
        """The alert row, its latest event and the aggregates around its period."""
        async with await self._connect() as conn:
            cur = await conn.execute(_ALERT_SQL, {"id": alert_id})
            row = await cur.fetchone()
            if row is None or row["payload"] is None:
                return None
            event = AlertEvent.model_validate(row.pop("payload"))
            facts: dict[str, Any] = dict(row)
            start, end = event.period_start, event.period_end
            if event.factor and start is not None and end is not None:
                params = {"stack": event.stack_id, "factor": event.factor, "start": start,
                          "end": end, "o2": O2, "limit": MAX_MINUTES}
                cur = await conn.execute(_HOUR_SQL, params)
                hour = await cur.fetchone()
                facts["hour"] = HourFacts.model_validate(hour) if hour is not None else None
                cur = await conn.execute(_O2_SQL, params)
                o2 = await cur.fetchone()
                facts["o2_measured"] = o2["o2"] if o2 is not None else None
                cur = await conn.execute(_MINUTES_SQL, params)
                facts["minutes"] = [MinuteFacts.model_validate(r) for r in await cur.fetchall()]
            if event.factor:
                until = end or event.last_seen
                cur = await conn.execute(_TREND_SQL, {
                    "stack": event.stack_id, "factor": event.factor,
                    "converted": event.ref_o2 is not None,
                    "since": until - timedelta(hours=trend_hours), "until": until,
                })
                facts["trend"] = [TrendPoint.model_validate(r) for r in await cur.fetchall()]
            return AlertEvidence(event=event, **facts)

    async def used(self, jti: str) -> bool:
        """True when the link has acknowledged already."""
        async with await self._connect() as conn:
            cur = await conn.execute(_USED_SQL, {"jti": jti})
            return await cur.fetchone() is not None

    async def use(
        self, claims: AckLinkClaims, reason: str, action: Callable[[], Awaitable[Any]]
    ) -> bool:
        """Insert the jti and run ``action`` in one transaction (a concurrent second submit of
        the same link waits on the row and then finds it taken)."""
        async with await self._connect() as conn, conn.transaction():
            cur = await conn.execute(_USE_SQL, {
                "jti": claims.jti, "alert_id": claims.alert_id, "recipient": claims.recipient,
                "reason": reason, "issued_at": claims.issued_at,
            })
            if await cur.fetchone() is None:
                return False
            await action()
        return True


# ---------------------------------------------------------------------------------- chart


@dataclass(frozen=True)
class Bar:
    """One hour's bar in the trend chart (SVG user units)."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: str
    css: str  # ok | over | invalid | current


@dataclass(frozen=True)
class TrendChart:
    """Geometry of the trend chart, computed here so the template only places elements."""

    width: int
    height: int
    left: int
    top: int
    bottom: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]
    limit_y: float | None
    limit_label: str


def _nice_step(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10ⁿ at least ``raw`` (readable axis ticks)."""
    if raw <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))


def trend_chart(
    points: list[TrendPoint],
    limit: float | None,
    highlight: datetime | None,
    *,
    width: int = 680,
    height: int = 220,
) -> TrendChart | None:
    """Bars of hourly values (red above the limit, grey when invalid, outlined for the alert's
    hour) with the limit as a dashed line. None when there is nothing to draw."""
    values = [p.value for p in points if p.value is not None]
    if not points or not values:
        return None
    left, right, top, bottom = 52, 10, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    tick = _nice_step(max([*values, limit or 0.0]) * 1.1 / 4)
    top_value = tick * 4
    step = plot_w / len(points)

    def y_of(v: float) -> float:
        return top + plot_h - max(v, 0.0) / top_value * plot_h

    bars: list[Bar] = []
    every = max(1, len(points) // 12)
    for i, p in enumerate(points):
        v = p.value if p.value is not None else 0.0
        if p.period_start == highlight:
            css = "current"
        elif not p.valid:
            css = "invalid"
        elif limit is not None and v > limit:
            css = "over"
        else:
            css = "ok"
        label = p.period_start.astimezone(CST).strftime("%H") if i % every == 0 else ""
        bars.append(Bar(
            x=round(left + i * step + step * 0.15, 2), y=round(y_of(v), 2),
            width=round(step * 0.7, 2), height=round(top + plot_h - y_of(v), 2),
            label=label, value=format_number(p.value), css=css,
        ))
    ticks = [(round(y_of(tick * k), 2), format_number(tick * k)) for k in range(5)]
    return TrendChart(
        width=width, height=height, left=left, top=top, bottom=top + plot_h, bars=bars,
        ticks=ticks, limit_y=round(y_of(limit), 2) if limit is not None else None,
        limit_label=f"限值 limit {format_number(limit)}" if limit is not None else "",
    )


# ----------------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class _Context:
    signer: AckLinkSigner
    evidence: EvidenceSource
    uses: LinkUseStore
    repository: AlertRepository
    publisher: AckPublisher
    clock: Callable[[], datetime]
    trend_hours: int
    grafana_url: str | None
    templates: jinja2.Environment


_CTX: web.AppKey[_Context] = web.AppKey("ack_page")

#: (status, heading, explanation) of each refusal; the page shows 中文 and English.
REFUSALS: dict[str, tuple[int, str, str]] = {
    "forged": (
        403,
        "链接无效 · Invalid link",
        "此链接的签名无法验证（被修改、不完整或不属于本告警）。请使用通知中的原始链接。"
        "\nThis link's signature does not verify (altered, truncated or not for this alert). "
        "Use the link exactly as it arrived in the notification.",
    ),
    "expired": (
        410,
        "链接已过期 · Link expired",
        "此确认链接已超过有效期。请使用最新通知中的链接，或通过值班平台确认。"
        "\nThis acknowledgement link has expired. Use the link of a newer notification, or "
        "acknowledge through the duty desk.",
    ),
    "reused": (
        410,
        "链接已使用 · Link already used",
        "此链接已经用于确认，每个链接只能使用一次。"
        "\nThis link has already been used to acknowledge; each link works once.",
    ),
    "unknown": (
        404,
        "未找到告警 · Alert not found",
        "数据库中（还）没有这条告警；刚发出的告警请稍后刷新。"
        "\nThis alert is not (yet) in the database; for a just-raised alert, reload shortly.",
    ),
}


def _security_headers(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _security_headers(exc)
        raise
    _security_headers(response)
    return response


def _time(dt: datetime | None) -> str:
    return dt.astimezone(CST).strftime("%Y-%m-%d %H:%M") if dt is not None else "—"


def _html(ctx: _Context, template: str, status: int, **values: Any) -> web.Response:
    body = ctx.templates.get_template(template).render(**values)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _refuse(ctx: _Context, why: str, detail: str | None = None) -> web.Response:
    status, heading, text = REFUSALS[why]
    zh, _, en = text.partition("\n")
    return _html(ctx, "ack_refused.html", status, heading=heading, zh=zh, en=en, detail=detail,
                 code=why, http_status=status)


def _verify(ctx: _Context, token: str, alert_id: str) -> AckLinkClaims | web.Response:
    try:
        return ctx.signer.verify(token, ctx.clock(), alert_id=alert_id)
    except LinkExpiredError as exc:
        issued = _time(exc.issued_at) if exc.issued_at else "?"
        hours = format_number(ctx.signer.lifetime.total_seconds() / 3600)
        detail = f"签发于 issued {issued} (UTC+8)，有效期 valid for {hours} h"
        return _refuse(ctx, "expired", detail)
    except LinkForgedError as exc:
        log.warning("ack link refused", extra={"alert_id": alert_id, "reason": str(exc)})
        return _refuse(ctx, "forged")


def _closed(evidence: AlertEvidence) -> str | None:
    """Why the alert cannot be acknowledged (None when it can)."""
    if evidence.state == "cleared":
        return (f"此告警已于 {_time(evidence.event.cleared_at)} 恢复，无需确认。 / This alert "
                f"cleared at {_time(evidence.event.cleared_at)} (UTC+8): nothing to acknowledge.")
    if evidence.state == "acknowledged" or evidence.acked_by:
        return (f"已由 {evidence.acked_by} 于 {_time(evidence.acked_at)} 确认 / Already "
                f"acknowledged by {evidence.acked_by} at {_time(evidence.acked_at)} (UTC+8): "
                f"{evidence.ack_reason or ''}")
    return None


def _page(
    ctx: _Context, status: int, evidence: AlertEvidence, claims: AckLinkClaims, token: str,
    *, error: str | None = None, reason: str = "", done: bool = False,
) -> web.Response:
    e = evidence.event
    info = factor_info(e.factor) if e.factor else None
    unit = info.unit if info is not None else ""
    percent = (
        format_number(round(e.value / e.limit * 100, 1))
        if e.value is not None and e.limit else None
    )
    chart = trend_chart(evidence.trend, e.limit, evidence.hour.period_start
                        if evidence.hour is not None else e.period_start)
    dashboard = alert_dashboard_url(ctx.grafana_url, e) if ctx.grafana_url else None
    return _html(
        ctx, "ack_page.html", status,
        e=e, ev=evidence, claims=claims, token=token, error=error, reason=reason, done=done,
        closed=None if done else _closed(evidence), unit=unit, percent=percent,
        factor_zh=info.name_zh if info else (e.factor or "—"),
        factor_en=info.name_en if info else (e.factor or "—"),
        chart=chart, dashboard=dashboard, flag_labels=FLAG_LABELS, fmt=format_number,
        time=_time, hm=lambda dt: dt.astimezone(CST).strftime("%H:%M"),
        lifetime_h=format_number(ctx.signer.lifetime.total_seconds() / 3600),
        max_reason=MAX_REASON,
    )


async def _checked(
    ctx: _Context, token: str, alert_id: str
) -> tuple[AckLinkClaims, AlertEvidence] | web.Response:
    """The link's claims and the alert's evidence, or the refusal page (forged, expired,
    used, unknown alert)."""
    claims = _verify(ctx, token, alert_id)
    if isinstance(claims, web.Response):
        return claims
    if await ctx.uses.used(claims.jti):
        return _refuse(ctx, "reused")
    evidence = await ctx.evidence.evidence(alert_id, ctx.trend_hours)
    if evidence is None:
        return _refuse(ctx, "unknown")
    return claims, evidence


async def _show(request: web.Request) -> web.Response:
    ctx = request.app[_CTX]
    alert_id, token = request.match_info["alert_id"], request.match_info["token"]
    checked = await _checked(ctx, token, alert_id)
    if isinstance(checked, web.Response):
        return checked
    claims, evidence = checked
    return _page(ctx, 200, evidence, claims, token)


async def _submit(request: web.Request) -> web.Response:
    ctx = request.app[_CTX]
    alert_id, path_token = request.match_info["alert_id"], request.match_info["token"]
    form = await request.post()
    token, raw_reason = form.get("token"), form.get("reason", "")
    if not isinstance(token, str) or token != path_token:
        return _refuse(ctx, "forged")
    checked = await _checked(ctx, token, alert_id)
    if isinstance(checked, web.Response):
        return checked
    claims, evidence = checked
    reason = raw_reason.strip() if isinstance(raw_reason, str) else ""
    if not reason or len(reason) > MAX_REASON:
        error = (
            "请填写确认原因（处理情况）。 / A reason is required: say why or what is being done."
            if not reason else
            f"原因过长（最多 {MAX_REASON} 字）。 / The reason is too long (at most {MAX_REASON})."
        )
        return _page(ctx, 422, evidence, claims, token, error=error, reason=reason[:MAX_REASON])
    if _closed(evidence) is not None:
        return _page(ctx, 409, evidence, claims, token)
    request_ = AckRequest(by=claims.recipient, reason=reason)

    async def publish() -> None:
        await publish_ack(ctx.repository, ctx.publisher, alert_id, request_, ctx.clock())

    try:
        fresh = await ctx.uses.use(claims, reason, publish)
    except AlertNotOpenError:
        refreshed = await ctx.evidence.evidence(alert_id, ctx.trend_hours) or evidence
        if _closed(refreshed) is not None:
            return _page(ctx, 409, refreshed, claims, token)
        error = "此告警已不再打开（已恢复）。 / This alert is no longer open (it has cleared)."
        return _page(ctx, 409, refreshed, claims, token, error=error, reason=reason)
    except Exception:
        log.exception("ack from link failed", extra={"alert_id": alert_id})
        error = ("确认未能提交，请稍后重试。 / The acknowledgement could not be recorded; "
                 "please try again in a moment.")
        return _page(ctx, 503, evidence, claims, token, error=error, reason=reason)
    if not fresh:
        return _refuse(ctx, "reused")
    log.info(
        "alert acknowledged from a link",
        extra={"alert_id": alert_id, "by": claims.recipient, "jti": claims.jti},
    )
    done = evidence.model_copy(update={
        "acked_by": claims.recipient, "ack_reason": reason, "acked_at": ctx.clock(),
    })
    return _page(ctx, 200, done, claims, token, done=True)


async def _health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def templates() -> jinja2.Environment:
    """The page templates (autoescaped: every value from the database or the link is text)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def create_ack_page_app(
    *,
    signer: AckLinkSigner,
    evidence: EvidenceSource,
    uses: LinkUseStore,
    repository: AlertRepository,
    publisher: AckPublisher,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    trend_hours: int = 24,
    grafana_url: str | None = None,
) -> web.Application:
    """The page app: ``GET``/``POST /ack/{alert_id}/{token}`` and ``GET /healthz``."""
    app = web.Application(middlewares=[_headers], client_max_size=32 * 1024)
    app[_CTX] = _Context(
        signer=signer, evidence=evidence, uses=uses, repository=repository, publisher=publisher,
        clock=clock, trend_hours=trend_hours, grafana_url=grafana_url, templates=templates(),
    )
    app.router.add_get("/ack/{alert_id}/{token}", _show)
    app.router.add_post("/ack/{alert_id}/{token}", _submit)
    app.router.add_get("/healthz", _health)
    return app
