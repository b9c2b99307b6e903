"""The stack registry: which data logger (MN) belongs to which stack, plant, sector and process.

The gateway authenticates MN + PW against it, the decoder resolves the stack, sector and
process (and so the limits that apply) from it. It is configuration data (YAML), validated
by pydantic. Passwords are stored as salted scrypt strings (`password_hash`,
`stackwatch.registry_hash`) in files meant for production and may be given in clear for
simulators/demos (`password`), never both. Old unsalted `password_sha256` entries are refused at
load (SHA-256 cannot be converted: re-hash the plaintext). An entry without a password accepts
no frame unless it says `accept_without_password: true`; `allowed_networks` optionally pins a
logger to source CIDRs (docs/security.md).

Canonical sector/process identifiers are shared with the limit catalogue and simulators:

| sector | processes |
|---|---|
| power | coal_boiler |
| boiler | coal_boiler, gas_boiler |
| cement | kiln_tail, kiln_head, coal_mill, cement_mill, packing, dryer, grinding_workshop |
| steel | sinter, pellet, coke_oven, reheating_furnace, hot_blast_stove, converter, other, |
|       | own_coal_boiler, own_gas_boiler, own_gas_turbine, own_oil_boiler (自备电厂) |
| coking | coke_oven_stack, charging, pushing, dry_quenching, tube_furnace, crushing, |
|        | ammonium_sulfate_drying |
| aluminium | electrolysis |
| carbon | anode_baking |
| glass | furnace |
| coal_chemical | boiler |
| ceramics | kiln |
| brick | kiln |
| refractory | kiln |
| industrial_furnace | other |
"""

from __future__ import annotations

import hmac
import ipaddress
import itertools
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)

from stackwatch.hj212.encryption import parse_key
from stackwatch.intervals import MIN_INTERVALS, IntervalLabel, PressureUnit
from stackwatch.registry_hash import (
    DEFAULT_N,
    LEGACY_SHA256_MESSAGE,
    PasswordVerifier,
    hash_password,
    parse_hash,
    verify_password,
)

__all__ = [
    "SECTOR_PROCESSES",
    "PermitCap",
    "ProgramPeriod",
    "Sm4Key",
    "StackInfo",
    "StackRegistry",
    "hash_password",
]

SECTOR_PROCESSES: dict[str, tuple[str, ...]] = {
    "power": ("coal_boiler",),
    "boiler": ("coal_boiler", "gas_boiler"),
    "cement": (
        "kiln_tail",
        "kiln_head",
        "coal_mill",
        "cement_mill",
        "packing",
        "dryer",
        "grinding_workshop",
    ),
    "steel": (
        "sinter",
        "pellet",
        "coke_oven",
        "reheating_furnace",
        "hot_blast_stove",
        "converter",
        "other",
        "own_coal_boiler",
        "own_gas_boiler",
        "own_gas_turbine",
        "own_oil_boiler",
    ),
    "coking": (
        "coke_oven_stack",
        "charging",
        "pushing",
        "dry_quenching",
        "tube_furnace",
        "crushing",
        "ammonium_sulfate_drying",
    ),
    "aluminium": ("electrolysis",),
    "carbon": ("anode_baking",),
    "glass": ("furnace",),
    "coal_chemical": ("boiler",),
    "ceramics": ("kiln",),
    "brick": ("kiln",),
    "refractory": ("kiln",),
    "industrial_furnace": ("other",),
}


def _utf8(text: str) -> bytes:
    # surrogatepass: a decoded frame may carry lone surrogates; they must not raise either.
    return text.encode("utf-8", errors="surrogatepass")


EncryptionPolicy = Literal["required", "optional", "off"]
"""HJ 212-2025 CP encryption: required (clear data commands are refused), optional (both are
accepted), off (the logger has no key; encrypted frames cannot be read)."""


class Sm4Key(BaseModel):
    """One SM4 key of a logger (HJ 212-2025), accepted until `valid_until` (None = no end).

    During a rotation the old key stays listed with a `valid_until` and the new one is added:
    both open frames until then. Keys are secrets: never logged, stored or sent anywhere.
    """

    model_config = ConfigDict(frozen=True)

    key: SecretStr = Field(description="32 hex digits (16 bytes).")
    valid_until: AwareDatetime | None = None

    @field_validator("key")
    @classmethod
    def _hex(cls, value: SecretStr) -> SecretStr:
        parse_key(value.get_secret_value())
        return value

    def usable_at(self, when: datetime) -> bool:
        """Whether the key is still accepted at `when`."""
        return self.valid_until is None or when <= self.valid_until


class ProgramPeriod(BaseModel):
    """The ultra-low program a stack is judged by over a span of days (its retrofit schedule).

    A plant retrofitted by its own deadline moves from one program to the next on that day,
    not on the catalogue's date for everyone (e.g. Henan's 2019 cement values until the plant's
    national-2024 deadline). Both bounds are inclusive; None = open.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    program: str = Field(min_length=1)
    since: date | None = None
    until: date | None = None

    @model_validator(mode="after")
    def _order(self) -> ProgramPeriod:
        if self.since is not None and self.until is not None and self.until < self.since:
            raise ValueError(f"program {self.program}: until {self.until} is before {self.since}")
        return self

    def covers(self, day: date) -> bool:
        """Whether `day` falls in this period."""
        return (self.since is None or self.since <= day) and (
            self.until is None or day <= self.until
        )


class PermitCap(BaseModel):
    """A permitted total emission (排污许可 许可排放量) of one pollutant per year or month."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    factor: str = Field(pattern=r"^a\d{5}$", description="HJ 212 pollutant code, e.g. a21026.")
    tonnes: float = Field(gt=0, allow_inf_nan=False, description="Cap in tonnes per period.")
    per: Literal["year", "month"] = "year"


class StackInfo(BaseModel):
    """One monitored point (a stack, or a workshop dust monitor) and its data logger."""

    model_config = ConfigDict(frozen=True)

    stack_id: str = Field(description="Stable id used as the Kafka key and database key.")
    mn: str = Field(min_length=1, max_length=24, description="HJ 212 MN of the data logger.")
    password: SecretStr | None = Field(default=None, description="Clear PW (demo/simulator).")
    password_hash: str | None = Field(
        default=None,
        description="Salted scrypt PW, `scrypt$n$r$p$salt$hash` (production; "
        "`stackwatch registry hash-password` prints one).",
    )
    accept_without_password: bool = Field(
        default=False,
        description="Opt-in for a logger without a password: then any PW (or none) is "
        "accepted. Without it an entry with no password accepts no frame.",
    )
    allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Source networks (CIDRs) this logger may connect from; empty = anywhere.",
    )
    name: str = ""
    plant: str = ""
    city: str = ""
    province: str = ""
    sector: str
    process: str
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    program: str | None = Field(
        default=None,
        description="Ultra-low program this stack is judged by (None = every program the "
        "catalogue has in force for its place and day).",
    )
    program_schedule: list[ProgramPeriod] = Field(
        default_factory=list,
        description="The stack's own program changes by date (retrofit deadlines); a day "
        "outside every period falls back to `program`.",
    )
    permit_caps: list[PermitCap] = Field(
        default_factory=list, description="Permitted emission totals (t per year or month)."
    )
    system_type: str | None = Field(
        default=None,
        description="HJ 212 ST of the logger (31 flue gas, 32 wastewater); None = as its frames "
        "say. Only flue gas is averaged and judged.",
    )
    rtd_interval_s: int | None = Field(
        default=None,
        ge=1,
        le=3600,
        description="Real-time interval RtdInterval (s); None = inferred from the traffic.",
    )
    min_interval_min: int | None = Field(
        default=None,
        description="Minute-data interval MinInterval (min; HJ 212-2017 Table 4: 1, 2, 3, 4, "
        "5, 6, 10, 12, 15, 20 or 30); None = inferred from the traffic.",
    )
    interval_label: IntervalLabel | None = Field(
        default=None,
        description="Whether the logger stamps 2051/2061/2031 records with the interval's "
        "start (HJ 212-2017) or its end (common on HJ/T 212-2005 loggers); None = the default "
        "of the frame's protocol version.",
    )
    pressure_unit: PressureUnit | None = Field(
        default=None,
        description="Unit of the flue-gas pressure a01013 (S08): kPa (HJ 212-2017 App. B.2), "
        "Pa, or absolute pressure in kPa/Pa; None = kPa.",
    )
    auto: bool = Field(
        default=False,
        description="Auto-registered (e.g. an MN first seen in a replayed foreign capture): its "
        "sector/process are placeholders, not facts.",
    )
    limit_overrides: dict[str, float] = Field(
        default_factory=dict, description="Per-stack limit overrides, factor code → mg/m³."
    )
    encryption: EncryptionPolicy = Field(
        default="optional",
        description="HJ 212-2025 SM4 encryption of data commands: required, optional or off.",
    )
    sm4_keys: list[Sm4Key] = Field(
        default_factory=list,
        description="The logger's SM4 keys (current first; an old one with valid_until while a "
        "rotation lasts).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_legacy_hash(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("password_sha256") is not None:
            raise ValueError(f"stack {data.get('stack_id')!r}: {LEGACY_SHA256_MESSAGE}")
        return data

    @field_validator("password_hash")
    @classmethod
    def _scrypt(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hash(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> StackInfo:
        if self.min_interval_min is not None and self.min_interval_min not in MIN_INTERVALS:
            raise ValueError(
                f"min_interval_min {self.min_interval_min} is not one of {MIN_INTERVALS} "
                "(HJ 212-2017 Table 4)"
            )
        if self.sector not in SECTOR_PROCESSES:
            raise ValueError(f"unknown sector {self.sector!r}")
        if self.process not in SECTOR_PROCESSES[self.sector]:
            raise ValueError(f"unknown process {self.process!r} for sector {self.sector!r}")
        if self.password is not None and self.password_hash is not None:
            raise ValueError("give either password or password_hash, not both")
        if self.accept_without_password and self.has_password:
            raise ValueError("accept_without_password contradicts a configured password")
        periods = sorted(self.program_schedule, key=lambda p: p.since or date.min)
        for before, after in itertools.pairwise(periods):
            if before.until is None or after.since is None or after.since <= before.until:
                raise ValueError(
                    f"program_schedule periods overlap: {before.program} and {after.program}"
                )
        return self

    def program_on(self, day: date) -> str | None:
        """The ultra-low program the stack is judged by on `day`."""
        for period in self.program_schedule:
            if period.covers(day):
                return period.program
        return self.program

    def keys_at(self, when: datetime) -> list[bytes]:
        """The SM4 keys that open this logger's frames at `when`, current first."""
        return [parse_key(k.key.get_secret_value()) for k in self.sm4_keys if k.usable_at(when)]

    @property
    def has_password(self) -> bool:
        """Whether a password (clear or hashed) is configured."""
        return self.password is not None or self.password_hash is not None

    def peer_allowed(self, host: str | None) -> bool:
        """Whether a connection from `host` may speak for this logger (`allowed_networks`)."""
        if not self.allowed_networks:
            return True
        try:
            addr = ipaddress.ip_address((host or "").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allowed_networks)

    def password_needs_hashing(self, pw: str | None, verifier: PasswordVerifier) -> bool:
        """Whether checking `pw` costs a scrypt (not yet in the verifier's cache)."""
        return (
            pw is not None
            and self.password_hash is not None
            and verifier.cached(self.mn, self.password_hash, pw) is None
        )

    def password_matches(self, pw: str | None, verifier: PasswordVerifier | None = None) -> bool:
        """PW check; an entry without a password accepts only if it opted in.

        Clear passwords are compared as UTF-8 bytes in constant time (`hmac.compare_digest`
        raises TypeError on `str` with non-ASCII characters, and a PW field is whatever the
        logger — or an attacker — sent); hashed ones through `verifier` (cached) or scrypt.
        """
        if not self.has_password:
            return self.accept_without_password
        if pw is None:
            return False
        if self.password is not None:
            return hmac.compare_digest(_utf8(self.password.get_secret_value()), _utf8(pw))
        assert self.password_hash is not None
        if verifier is not None:
            return verifier.verify(self.mn, self.password_hash, pw)
        return verify_password(self.password_hash, pw)


class StackRegistry(BaseModel):
    """All known stacks, indexed by MN and by stack id."""

    stacks: list[StackInfo] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> StackRegistry:
        for attr in ("mn", "stack_id"):
            seen: set[str] = set()
            for stack in self.stacks:
                value = getattr(stack, attr)
                if value in seen:
                    raise ValueError(f"duplicate {attr} {value!r} in registry")
                seen.add(value)
        return self

    def by_mn(self, mn: str | None) -> StackInfo | None:
        """The stack whose logger has this MN, if registered."""
        if mn is None:
            return None
        return self._mn_index().get(mn)

    def by_id(self, stack_id: str) -> StackInfo | None:
        """The stack with this id, if registered."""
        index: dict[str, StackInfo] | None = self.__dict__.get("_id_cache")
        if index is None or len(index) != len(self.stacks):
            index = {s.stack_id: s for s in self.stacks}
            self.__dict__["_id_cache"] = index
        return index.get(stack_id)

    def _mn_index(self) -> dict[str, StackInfo]:
        index: dict[str, StackInfo] | None = self.__dict__.get("_mn_cache")
        if index is None or len(index) != len(self.stacks):
            index = {s.mn: s for s in self.stacks}
            self.__dict__["_mn_cache"] = index
        return index

    def with_stacks(self, extra: Iterable[StackInfo]) -> StackRegistry:
        """A new registry with more stacks (e.g. auto-registered MNs during replay)."""
        return StackRegistry(stacks=[*self.stacks, *extra])

    @classmethod
    def load(cls, path: Path) -> StackRegistry:
        """Load and validate a YAML registry file (`stacks: [...]`)."""
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls.model_validate(data)

    def dump(self, path: Path, *, scrypt_n: int = DEFAULT_N) -> None:
        """Write the registry as YAML (clear passwords are written as scrypt hashes).

        `scrypt_n` is the hashes' cost; lower it only where the passwords are not secret
        anyway (`CAPTURE_SCRYPT_N`, a registry inferred from a capture that holds them).
        """
        rows = []
        for stack in self.stacks:
            row = stack.model_dump(
                mode="json", exclude_none=True, exclude={"password", "sm4_keys"}
            )
            if stack.sm4_keys:
                # The operator's registry holds the keys (the gateway needs them in clear).
                row["sm4_keys"] = [
                    {"key": k.key.get_secret_value()}
                    | ({"valid_until": k.valid_until.isoformat()} if k.valid_until else {})
                    for k in stack.sm4_keys
                ]
            if stack.password is not None:
                row["password_hash"] = hash_password(
                    stack.password.get_secret_value(), n=scrypt_n
                )
            rows.append(row)
        path.write_text(yaml.safe_dump({"stacks": rows}, allow_unicode=True, sort_keys=False))
