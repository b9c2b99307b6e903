"""Message rendering: bilingual (中文 + English) subject, plain text, HTML and webhook payloads.

Every message states what an inspector needs to act without opening another system: stack,
plant, factor (name and HJ 212-2017 code), value against the limit, the reference O2 the value
is converted to (HJ 212-2017 App. D eq. 28; "measured" where no reference applies), the period
(Beijing time, the time base of HJ 212 DataTime), the rule's evidence, a link to the
Grafana stack dashboard at the alert's stack and time range, and — when acknowledgement links
are on — the recipient's own signed link to acknowledge it (``ack_links``: alert id → URL,
built per delivery by the notifier, see ``stackwatch.notify.ack_link``). Webhook formats:

* generic JSON: a stable, versioned document for machine consumers;
* DingTalk custom robot: ``{"msgtype": "markdown", "markdown": {"title", "text"}}``;
* WeCom (企业微信) group robot: ``{"msgtype": "markdown", "markdown": {"content"}}``, whose
  content is limited to 4096 UTF-8 bytes, so it is cut at an alert boundary with a note.

Text that people or the registry supply (plant and stack names, acknowledgement reasons,
evidence strings) reaches the robots' markdown through :func:`markdown_escape`, so a reason
like ``[点我](http://evil) @all <@zhangsan>`` can add no link, formatting, mention or tag.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from stackwatch.beijing_time import CST
from stackwatch.compliance import Severity
from stackwatch.hj212.codes import factor_info
from stackwatch.models import AlertEvent, Rule
from stackwatch.notify.model import AlertItem, Heartbeat, Notification, NotificationKind

__all__ = [
    "CST",
    "WECOM_MAX_BYTES",
    "alert_dashboard_url",
    "dashboard_url",
    "dingtalk_payload",
    "format_number",
    "heartbeat_payload",
    "heartbeat_subject",
    "heartbeat_text",
    "json_payload",
    "markdown_escape",
    "render_html",
    "render_subject",
    "render_text",
    "wecom_payload",
]


WECOM_MAX_BYTES = 4096
"""WeCom group robot: markdown content at most 4096 bytes (UTF-8)."""

SEVERITY_LABELS: dict[Severity, tuple[str, str]] = {
    Severity.WARNING: ("预警", "WARNING"),
    Severity.ALARM: ("告警", "ALARM"),
    Severity.CRITICAL: ("严重", "CRITICAL"),
}

KIND_LABELS: dict[NotificationKind, tuple[str, str]] = {
    NotificationKind.FIRING: ("新告警", "NEW"),
    NotificationKind.REPEAT: ("重复提醒", "REPEAT"),
    NotificationKind.ESCALATION: ("升级", "ESCALATED"),
    NotificationKind.RESOLVED: ("已恢复", "RESOLVED"),
}

#: Rules whose value/limit are concentrations in the factor's unit (percent of limit shown).
_CONCENTRATION_RULES = frozenset(
    {Rule.HOUR_EXCEEDANCE, Rule.HOUR_WARNING, Rule.PROVISIONAL_EXCEEDANCE, Rule.OVER_RANGE}
)
#: Rules whose value is a measured value in the factor's unit, without a percent.
_VALUE_RULES = frozenset(
    {Rule.FLATLINE, Rule.ZERO, Rule.NEGATIVE, Rule.LOGGER_HOUR_MISMATCH, Rule.ZS_MISMATCH}
)


def format_number(value: float | None) -> str:
    """Human number: up to 4 decimals without trailing zeros; very large/small in 4 s.f."""
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-4:
        return f"{value:.4g}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _time(dt: datetime | None) -> str:
    return dt.astimezone(CST).strftime("%Y-%m-%d %H:%M") if dt is not None else "—"


def _period(start: datetime | None, end: datetime | None) -> str:
    if start is None and end is None:
        return "—"
    if start is None or end is None:
        return f"{_time(start or end)} (UTC+8)"
    a, b = start.astimezone(CST), end.astimezone(CST)
    tail = b.strftime("%H:%M") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M")
    return f"{a.strftime('%Y-%m-%d %H:%M')} – {tail} (UTC+8)"


DASHBOARD_BEFORE = timedelta(hours=6)
"""The dashboard link opens this long before the alert's period (the run-up is evidence)."""
DASHBOARD_AFTER = timedelta(hours=1)
"""…and this long after it (what happened next)."""


def _epoch_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def dashboard_url(
    base: str, stack_id: str, start: datetime | None = None, end: datetime | None = None
) -> str:
    """Grafana stack dashboard of ``stack_id``; with ``start``/``end`` also the time range
    (``from``/``to`` in epoch milliseconds, Grafana's absolute-range URL form)."""
    stack = quote(stack_id, safe="")
    url = f"{base.rstrip('/')}/d/stackwatch-stack/stack-detail?var-stack={stack}"
    if start is not None and end is not None:
        url += f"&from={_epoch_ms(start)}&to={_epoch_ms(max(start, end))}"
    return url


def alert_dashboard_url(base: str, event: AlertEvent) -> str:
    """Stack detail at the alert's stack, from :data:`DASHBOARD_BEFORE` before its period
    (or first sighting) to :data:`DASHBOARD_AFTER` after its period (or last sighting)."""
    start = event.period_start or event.first_seen
    end = event.cleared_at or event.period_end or event.last_seen
    return dashboard_url(
        base, event.stack_id, start - DASHBOARD_BEFORE, max(end, start) + DASHBOARD_AFTER
    )


def _unit(event: AlertEvent) -> str:
    if event.rule is Rule.HOUR_INCOMPLETE:
        return "min"
    if event.rule in _CONCENTRATION_RULES or event.rule in _VALUE_RULES:
        info = factor_info(event.factor) if event.factor else None
        return info.unit if info is not None else ""
    return ""


def _factor(event: AlertEvent) -> tuple[str, str]:
    """(中文, English) factor label including the code, or dashes for stack-level alerts."""
    if not event.factor:
        return ("—（排放口级）", "— (stack level)")
    info = factor_info(event.factor)
    if info is None:
        return (f"[{event.factor}]", f"[{event.factor}]")
    return (f"{info.name_zh} [{event.factor}]", f"{info.name_en} [{event.factor}]")


def _value_line(event: AlertEvent) -> str:
    unit = _unit(event)
    sfx = f" {unit}" if unit else ""
    text = f"{format_number(event.value)}{sfx}"
    if event.limit is not None:
        text += f"（限值 limit {format_number(event.limit)}{sfx}"
        if event.rule in _CONCENTRATION_RULES and event.value is not None and event.limit > 0:
            text += f"，{format_number(round(event.value / event.limit * 100, 1))} %"
        text += "）"
    return text


def _ref_o2(event: AlertEvent) -> str:
    if event.ref_o2 is None:
        return "实测值，未折算 / measured, no O2 correction"
    return f"{format_number(event.ref_o2)} %（折算 / converted to reference O2）"


def _state(item: AlertItem) -> str:
    e = item.event
    if e.cleared_at is not None:
        return f"已恢复 resolved at {_time(e.cleared_at)}"
    if e.acknowledged:
        who = e.ack_by or "?"
        why = f": {e.ack_reason}" if e.ack_reason else ""
        return f"已确认 acknowledged by {who} at {_time(e.ack_at)}{why}"
    return "未确认 unacknowledged"


def _evidence(event: AlertEvent) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key in sorted(event.evidence):
        value = event.evidence[key]
        if value is None:
            continue
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, int | float):
            text = format_number(float(value))
        else:
            text = str(value)
        out.append((key, text))
    return out


ACK_LABEL = "确认 / Acknowledge"
"""Label of the row carrying the recipient's acknowledgement link."""
DASHBOARD_LABEL = "曲线 / Dashboard"


def _fields(
    item: AlertItem, base_url: str, ack_links: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(label, value) rows of one alert, in display order."""
    e, s = item.event, item.stack
    zh_sev, en_sev = SEVERITY_LABELS[e.severity]
    fz, fe = _factor(e)
    stack = f"{s.name} ({e.stack_id})" if s.name else e.stack_id
    plant = " · ".join(p for p in (s.plant, s.city, s.sector) if p) or "—"
    rows = [
        ("告警 / Alert", f"{e.title_zh} / {e.title_en}"),
        ("级别 / Severity", f"{zh_sev} {en_sev}"),
        ("状态 / State", _state(item)),
        ("排放口 / Stack", stack),
        ("企业 / Plant", plant),
        ("因子 / Factor", f"{fz} / {fe}" if fz != fe else fz),
        ("监测值 / Value", _value_line(e)),
    ]
    if e.peak_value is not None and e.peak_value != e.value:
        unit = _unit(e)
        rows.append(("峰值 / Peak", f"{format_number(e.peak_value)}{' ' + unit if unit else ''}"))
    rows += [
        ("基准氧 / Ref O2", _ref_o2(e)),
        ("时段 / Period", _period(e.period_start, e.period_end)),
        (
            "首次 / First seen",
            f"{_time(e.first_seen)}，最近 last {_time(e.last_seen)}，次数 count {e.count}",
        ),
    ]
    if item.level:
        rows.append(("升级 / Escalation", f"第 {item.level} 级 / level {item.level}"))
    evidence = _evidence(e)
    if evidence:
        rows.append(("证据 / Evidence", "; ".join(f"{k}={v}" for k, v in evidence)))
    link = (ack_links or {}).get(e.alert_id)
    if link and not item.resolved:
        rows.append((ACK_LABEL, link))
    rows += [
        (DASHBOARD_LABEL, alert_dashboard_url(base_url, e)),
        ("编号 / Alert id", e.alert_id),
    ]
    return rows


_LINKED = (ACK_LABEL, DASHBOARD_LABEL)


def render_subject(n: Notification) -> str:
    """One-line subject / chat title."""
    kz, ke = KIND_LABELS[n.kind]
    top = max((a.event.severity for a in n.alerts), key=lambda s: s.rank)
    sz, se = SEVERITY_LABELS[top]
    level = f" L{n.level}" if n.kind is NotificationKind.ESCALATION else ""
    head = f"[{kz}{level} {ke} · {sz} {se}]"
    first = n.alerts[0]
    where = first.stack.plant or first.event.stack_id
    if len(n.alerts) == 1:
        e = first.event
        stack = first.stack.name or e.stack_id
        factor = f" {e.factor}" if e.factor else ""
        return f"{head} {e.title_zh} {e.title_en} — {where} {stack}{factor}".replace("  ", " ")
    return f"{head} {len(n.alerts)} 条告警 / {len(n.alerts)} alerts — {where}"


def _intro(n: Notification) -> str:
    if n.kind is NotificationKind.ESCALATION:
        return (
            f"以下告警未被确认，已升级至第 {n.level} 级（{', '.join(n.groups)}）。"
            f"\nUnacknowledged alerts escalated to level {n.level} ({', '.join(n.groups)})."
        )
    if n.kind is NotificationKind.REPEAT:
        return "以下告警仍未确认。\nThese alerts are still unacknowledged."
    if n.kind is NotificationKind.RESOLVED:
        return "以下告警已恢复。\nThese alerts have cleared."
    return "stackwatch 告警通知。\nstackwatch alert notification."


_ACK_HINT = (
    "确认 / Acknowledge: stackwatch alerts ack <编号 alert id> --by <姓名 name> --reason <原因>"
)
_LINK_HINT = (
    "确认 / Acknowledge: 打开上面的确认链接（本人专用，请勿转发） / open the acknowledge link "
    "above (personal: it records you, do not forward it)."
)


def _hint(n: Notification, ack_links: Mapping[str, str] | None) -> str | None:
    if n.kind is NotificationKind.RESOLVED:
        return None
    if ack_links and any(item.event.alert_id in ack_links for item in n.alerts):
        return _LINK_HINT
    return _ACK_HINT


def render_text(
    n: Notification, base_url: str, ack_links: Mapping[str, str] | None = None
) -> str:
    """Plain-text body (e-mail text part, generic JSON ``text``)."""
    parts = [render_subject(n), "", _intro(n)]
    for i, item in enumerate(n.alerts, 1):
        parts += ["", f"— {i}/{len(n.alerts)} —"]
        parts += [f"{label}: {value}" for label, value in _fields(item, base_url, ack_links)]
    hint = _hint(n, ack_links)
    if hint is not None:
        parts += ["", hint]
    return "\n".join(parts) + "\n"


def render_html(
    n: Notification, base_url: str, ack_links: Mapping[str, str] | None = None
) -> str:
    """HTML body (e-mail HTML part). Every interpolated value is escaped."""
    esc = html.escape
    blocks: list[str] = []
    for item in n.alerts:
        rows = []
        for label, value in _fields(item, base_url, ack_links):
            linked = label in _LINKED
            cell = f'<a href="{esc(value)}">{esc(value)}</a>' if linked else esc(value)
            rows.append(
                f'<tr><th style="text-align:left;padding:2px 8px">{esc(label)}</th>'
                f'<td style="padding:2px 8px">{cell}</td></tr>'
            )
        blocks.append('<table style="border-collapse:collapse;margin:8px 0">' + "".join(rows)
                      + "</table>")
    intro = "<br>".join(esc(line) for line in _intro(n).splitlines())
    text_hint = _hint(n, ack_links)
    hint = f"<p>{esc(text_hint)}</p>" if text_hint is not None else ""
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{esc(render_subject(n))}</title></head><body>"
        f"<h2>{esc(render_subject(n))}</h2><p>{intro}</p>{''.join(blocks)}{hint}</body></html>"
    )


#: CommonMark punctuation that can open markup (emphasis, links, images, code, headings,
#: tables, strike-through): backslash-escaped, which CommonMark renders as the character.
_MD_SPECIAL = frozenset("\\`*_[]()#!|~")
#: Characters no escape reliably neutralises on the robots: ``<`` opens WeCom's ``<font>`` and
#: ``<@userid>`` mention, ``@`` a DingTalk/WeCom mention. Replaced by their full-width forms,
#: which read the same to a person and never form markup.
_MD_REPLACE = {"<": "＜", ">": "＞", "@": "＠"}


def markdown_escape(text: str) -> str:
    """``text`` as literal markdown for DingTalk/WeCom: no link, emphasis, heading, tag,
    mention or auto-link can come out of it, and it stays on one line (a newline would let
    the next line start a heading, quote or list)."""
    out: list[str] = []
    for ch in text.replace("\r\n", " ").replace("\n", " ").replace("\r", " "):
        if ch in _MD_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(_MD_REPLACE.get(ch, ch))
    # auto-links (GFM: scheme:// and www.) are defanged with a full-width colon / dot
    return "".join(out).replace("://", "：//").replace("www.", "www．")


def _markdown_alert(
    item: AlertItem, base_url: str, sep: str, ack_links: Mapping[str, str] | None
) -> str:
    lines: list[str] = []
    for label, value in _fields(item, base_url, ack_links):
        if label == DASHBOARD_LABEL:
            lines.append(f"[查看曲线 Open dashboard]({value})")
        elif label == ACK_LABEL:
            lines.append(f"**{label}**: [点此确认 Acknowledge here]({value})")
        else:
            lines.append(f"**{label}**: {markdown_escape(value)}")
    return sep.join(lines)


def _more(count: int, sep: str) -> str:
    return f"{sep}…另有 {count} 条告警未显示 / {count} more alert(s) not shown\n"


def _markdown(
    n: Notification,
    base_url: str,
    sep: str,
    max_bytes: int | None = None,
    ack_links: Mapping[str, str] | None = None,
) -> str:
    """Markdown of the notification, one field per line (``sep``: DingTalk needs a blank line
    between lines, WeCom honours single newlines). With ``max_bytes`` it is cut at an alert
    boundary with a note (an alert is shown only when the note for the rest still fits)."""
    text = f"### {markdown_escape(render_subject(n))}{sep}{sep.join(_intro(n).splitlines())}\n"
    rule = f"{sep}---{sep}"
    blocks = [_markdown_alert(item, base_url, sep, ack_links) for item in n.alerts]
    for i, block in enumerate(blocks):
        candidate = text + rule + block + "\n"
        if max_bytes is None:
            text = candidate
            continue
        rest = len(blocks) - i - 1
        if len((candidate + (_more(rest, sep) if rest else "")).encode("utf-8")) <= max_bytes:
            text = candidate
            continue
        if i == 0:
            return _cut(candidate, max_bytes)  # a single oversized alert: show what fits
        return _cut(text + _more(len(blocks) - i, sep), max_bytes)
    return text


def _cut(text: str, max_bytes: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[: max_bytes - 3].decode("utf-8", errors="ignore") + "…"


def dingtalk_payload(
    n: Notification, base_url: str, ack_links: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """DingTalk custom robot markdown message."""
    text = _markdown(n, base_url, "\n\n", ack_links=ack_links)
    return {"msgtype": "markdown", "markdown": {"title": render_subject(n), "text": text}}


def wecom_payload(
    n: Notification, base_url: str, ack_links: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """WeCom group robot markdown message (content ≤ 4096 UTF-8 bytes)."""
    content = _markdown(n, base_url, "\n", WECOM_MAX_BYTES, ack_links)
    return {"msgtype": "markdown", "markdown": {"content": content}}


def json_payload(
    n: Notification, base_url: str, ack_links: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Generic JSON document (``version`` 1) for machine consumers; ``ack_url`` is the
    recipient's acknowledgement link (null when links are off or the alert has cleared)."""
    links = ack_links or {}
    alerts: list[dict[str, Any]] = []
    for item in n.alerts:
        e, s = item.event, item.stack
        info = factor_info(e.factor) if e.factor else None
        alerts.append(
            {
                "alert_id": e.alert_id,
                "seq": e.seq,
                "event": e.kind.value,
                "rule": e.rule.value,
                "title_zh": e.title_zh,
                "title_en": e.title_en,
                "severity": e.severity.value,
                "state": e.state.value,
                "stack_id": e.stack_id,
                "stack_name": s.name,
                "plant": s.plant,
                "city": s.city,
                "sector": s.sector,
                "factor": e.factor,
                "factor_name_zh": info.name_zh if info else None,
                "factor_name_en": info.name_en if info else None,
                "value": e.value,
                "peak_value": e.peak_value,
                "limit": e.limit,
                "unit": _unit(e) or None,
                "ref_o2": e.ref_o2,
                "period_start": e.period_start.isoformat() if e.period_start else None,
                "period_end": e.period_end.isoformat() if e.period_end else None,
                "first_seen": e.first_seen.isoformat(),
                "last_seen": e.last_seen.isoformat(),
                "cleared_at": e.cleared_at.isoformat() if e.cleared_at else None,
                "count": e.count,
                "evidence": dict(e.evidence),
                "acknowledged": e.acknowledged,
                "ack_by": e.ack_by,
                "ack_reason": e.ack_reason,
                "escalation_level": item.level,
                "dashboard_url": alert_dashboard_url(base_url, e),
                "ack_url": None if item.resolved else links.get(e.alert_id),
            }
        )
    return {
        "version": 1,
        "kind": n.kind.value,
        "route": n.route,
        "group_key": n.group_key,
        "groups": list(n.groups),
        "level": n.level,
        "at": n.at.isoformat(),
        "title": render_subject(n),
        "text": render_text(n, base_url, ack_links),
        "alerts": alerts,
    }


# ------------------------------------------------------------------------------ heartbeat


def heartbeat_subject(hb: Heartbeat) -> str:
    """Subject / chat title of a heartbeat."""
    return f"[心跳 HEARTBEAT] {hb.source} 运行正常 / is alive — {_time(hb.at)} (UTC+8)"


def heartbeat_text(hb: Heartbeat) -> str:
    """Plain text of a heartbeat: says when the next one is due and what its absence means."""
    due = _time(hb.at + timedelta(seconds=hb.interval_s))
    return (
        f"{heartbeat_subject(hb)}\n\n"
        f"告警通知链路正常。下一次心跳应在 {due} (UTC+8) 前到达；若未收到，说明告警通知已中断。\n"
        f"Alert notifications are working. The next heartbeat is due by {due} (UTC+8); if it "
        "does not arrive, notifications are down.\n"
    )


def heartbeat_payload(fmt: str, hb: Heartbeat) -> dict[str, Any]:
    """The heartbeat as a webhook payload of format ``fmt`` (json, dingtalk, wecom)."""
    text = heartbeat_text(hb)
    if fmt == "dingtalk":
        body = "\n\n".join(markdown_escape(line) for line in text.splitlines() if line)
        return {"msgtype": "markdown",
                "markdown": {"title": heartbeat_subject(hb), "text": body}}
    if fmt == "wecom":
        body = "\n".join(markdown_escape(line) for line in text.splitlines() if line)
        return {"msgtype": "markdown", "markdown": {"content": body}}
    return {
        "version": 1,
        "kind": "heartbeat",
        "source": hb.source,
        "at": hb.at.isoformat(),
        "next_by": (hb.at + timedelta(seconds=hb.interval_s)).isoformat(),
        "title": heartbeat_subject(hb),
        "text": text,
    }
