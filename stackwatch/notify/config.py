"""The notification routing file (YAML): recipients, groups, channels, routes, escalation.

Modelled on Alertmanager's route tree, flattened to a list because a monitoring centre thinks
in "who is on duty for which cities/sectors" rather than in nested trees:

* a **recipient** is a person or a robot with one or more **channels** (webhook or e-mail);
* a **group** is a named set of recipients (an escalation level is always a whole group);
* a **route** matches alerts (city, sector, severity, rule, stack, plant), names the first
  group to notify, how alerts are grouped into one message, the group wait / group interval /
  repeat interval, and the escalation steps for unacknowledged alarms.

Routes are evaluated in file order; the first match wins unless it says ``continue: true``
(Alertmanager semantics). Secrets (webhook URLs carry access tokens, DingTalk signing keys)
are ``SecretStr``; a value written as ``${ENV_VAR}`` is read from the environment at load
time, so the file itself can be committed without secrets.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from stackwatch.alerts import Severity
from stackwatch.models import Rule

__all__ = [
    "Channel",
    "Duration",
    "EmailChannel",
    "EscalationStep",
    "Matcher",
    "NotifyConfig",
    "NotifyConfigError",
    "Recipient",
    "RecipientGroup",
    "Route",
    "WebhookChannel",
    "WebhookFormat",
    "parse_duration",
]

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_EMAIL_RE = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
_NAME_RE = r"^[A-Za-z0-9_.\-\u4e00-\u9fff]+$"


class NotifyConfigError(ValueError):
    """The routing file cannot be read or is invalid (message names the file and the field)."""


def parse_duration(value: object) -> object:
    """Accept Alertmanager/Prometheus durations (``30s``, ``5m``, ``4h``, ``1h30m``, ``1d``).

    Numbers are seconds; anything else is left to pydantic (ISO 8601 ``PT5M``, timedelta).
    """
    if isinstance(value, str):
        text = value.strip()
        if text and _DURATION_RE.sub("", text) == "":
            seconds = sum(
                float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(text)
            )
            return timedelta(seconds=seconds)
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A timedelta that also accepts ``30s`` / ``5m`` / ``4h`` / ``1d`` strings."""


WebhookFormat = Literal["json", "dingtalk", "wecom"]


class WebhookChannel(BaseModel):
    """An HTTP POST of a JSON payload: generic JSON, DingTalk or WeCom robot markdown."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["webhook"] = "webhook"
    format: WebhookFormat = "json"
    url: SecretStr = Field(description="Robot URLs carry the access token: kept secret.")
    sign_secret: SecretStr | None = Field(
        default=None,
        description="DingTalk '加签' secret: adds timestamp+sign query parameters.",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra headers (e.g. Authorization for a generic hook)."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook url must be an absolute http(s) URL")
        return value

    @model_validator(mode="after")
    def _sign_only_dingtalk(self) -> WebhookChannel:
        if self.sign_secret is not None and self.format != "dingtalk":
            raise ValueError("sign_secret applies to format 'dingtalk' only")
        return self

    @property
    def target(self) -> str:
        """Where it goes without the secret part (scheme, host, path; no query)."""
        parts = urlsplit(self.url.get_secret_value())
        return f"{self.format} {parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


class EmailChannel(BaseModel):
    """An e-mail address (multipart: plain text + HTML, UTF-8)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["email"] = "email"
    address: str

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        if _EMAIL_RE.fullmatch(value) is None:
            raise ValueError(f"not an e-mail address: {value!r}")
        return value

    @property
    def target(self) -> str:
        """The address."""
        return self.address


Channel = Annotated[WebhookChannel | EmailChannel, Field(discriminator="type")]


class Recipient(BaseModel):
    """A person, a duty desk or a chat robot."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_NAME_RE)
    channels: list[Channel] = Field(min_length=1)


class RecipientGroup(BaseModel):
    """A named set of recipients; escalation moves from group to group."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_NAME_RE)
    members: list[str] = Field(min_length=1)


class Matcher(BaseModel):
    """Which alerts a route takes. Every given list must contain the alert's value; an empty
    (omitted) list matches anything. An alert of an unregistered stack has no city/sector, so
    it matches only routes that do not filter on them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cities: list[str] = Field(default_factory=list)
    sectors: list[str] = Field(default_factory=list)
    plants: list[str] = Field(default_factory=list)
    stacks: list[str] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    severities: list[Severity] = Field(default_factory=list)
    min_severity: Severity | None = None

    def matches(
        self, *, city: str, sector: str, plant: str, stack_id: str, rule: Rule, severity: Severity
    ) -> bool:
        """True when every constraint holds."""
        checks: list[tuple[list[Any], Any]] = [
            (self.cities, city),
            (self.sectors, sector),
            (self.plants, plant),
            (self.stacks, stack_id),
            (self.rules, rule),
            (self.severities, severity),
        ]
        if any(allowed and value not in allowed for allowed, value in checks):
            return False
        return self.min_severity is None or severity.rank >= self.min_severity.rank


class EscalationStep(BaseModel):
    """After ``after`` unacknowledged at the previous level, notify ``group`` too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after: Duration = Field(gt=timedelta(0))
    group: str


GroupLabel = Literal["route", "stack_id", "plant", "city", "sector", "factor", "rule", "alert_id"]


def _default_group_by() -> list[GroupLabel]:
    return ["stack_id", "rule"]


class Route(BaseModel):
    """One routing rule (Alertmanager route with an escalation chain)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(pattern=_NAME_RE)
    match: Matcher = Matcher()
    group: str = Field(description="The recipient group notified first (escalation level 0).")
    group_by: list[GroupLabel] = Field(
        default_factory=_default_group_by,
        description="Alerts with equal values of these labels share one message.",
    )
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    send_resolved: bool = True
    escalation: list[EscalationStep] = Field(default_factory=list)
    escalate_severities: list[Severity] = Field(
        default_factory=lambda: [Severity.ALARM, Severity.CRITICAL],
        description="Only unacknowledged alerts of these severities escalate.",
    )
    continue_matching: bool = Field(default=False, alias="continue")


class Timing(BaseModel):
    """Alertmanager timing defaults (its own defaults: 30 s, 5 min, 4 h)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group_wait: Duration = Field(default=timedelta(seconds=30), ge=timedelta(0))
    group_interval: Duration = Field(default=timedelta(minutes=5), ge=timedelta(0))
    repeat_interval: Duration = Field(default=timedelta(hours=4), gt=timedelta(0))


class NotifyConfig(BaseModel):
    """The whole routing file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grafana_url: str | None = Field(
        default=None, description="Dashboard base URL for links; None = settings.grafana_url."
    )
    defaults: Timing = Timing()
    recipients: list[Recipient] = Field(default_factory=list)
    groups: list[RecipientGroup] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> NotifyConfig:
        for kind, names in (
            ("recipient", [r.name for r in self.recipients]),
            ("group", [g.name for g in self.groups]),
            ("route", [r.name for r in self.routes]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} name(s): {', '.join(dupes)}")
        recipients = {r.name for r in self.recipients}
        for group in self.groups:
            missing = [m for m in group.members if m not in recipients]
            if missing:
                raise ValueError(f"group {group.name!r}: unknown recipient(s) {missing}")
        groups = {g.name for g in self.groups}
        for route in self.routes:
            for name in [route.group, *(s.group for s in route.escalation)]:
                if name not in groups:
                    raise ValueError(f"route {route.name!r}: unknown group {name!r}")
        return self

    # -- lookups

    def group(self, name: str) -> RecipientGroup:
        """The group called ``name`` (validated to exist for every route reference)."""
        return next(g for g in self.groups if g.name == name)

    def recipient(self, name: str) -> Recipient:
        """The recipient called ``name``."""
        return next(r for r in self.recipients if r.name == name)

    def route(self, name: str) -> Route:
        """The route called ``name``."""
        return next(r for r in self.routes if r.name == name)

    def timing(self, route: Route) -> Timing:
        """Route timing with the file defaults filled in."""
        d = self.defaults
        return Timing(
            group_wait=route.group_wait if route.group_wait is not None else d.group_wait,
            group_interval=(
                route.group_interval if route.group_interval is not None else d.group_interval
            ),
            repeat_interval=(
                route.repeat_interval if route.repeat_interval is not None else d.repeat_interval
            ),
        )

    # -- loading

    @classmethod
    def from_yaml(cls, text: str, *, environ: dict[str, str] | None = None) -> NotifyConfig:
        """Parse and validate YAML text, expanding ``${VAR}`` from ``environ`` (os.environ)."""
        env = dict(os.environ) if environ is None else environ
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise NotifyConfigError(f"not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise NotifyConfigError("the routing file must be a mapping at the top level")
        try:
            return cls.model_validate(_expand(data, env))
        except ValidationError as exc:
            raise NotifyConfigError(str(exc)) from None

    @classmethod
    def load(cls, path: Path, *, environ: dict[str, str] | None = None) -> NotifyConfig:
        """Load a routing file; any problem is a :class:`NotifyConfigError` naming the file."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise NotifyConfigError(f"{path}: {exc.strerror or exc}") from None
        try:
            return cls.from_yaml(text, environ=environ)
        except NotifyConfigError as exc:
            raise NotifyConfigError(f"{path}: {exc}") from None


def _expand(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise NotifyConfigError(f"environment variable {name} is not set")
            return env[name]

        return _ENV_RE.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, env) for v in node]
    return node
