"""Configuration of the per-stack processor, and what one of its calls produces."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from stackwatch.alerts import AlertPolicy
from stackwatch.averaging import DEFAULT_RULES, AveragingRules
from stackwatch.models import AggregateRecord, AlertEvent
from stackwatch.quality import QualityConfig


class StreamQualityConfig(QualityConfig):
    """Detector thresholds as the stream worker applies them.

    Offline after `offline_timeout` (10 minutes) without any frame, or after
    `offline_missed_uploads` of the logger's own upload interval if that is longer: a logger
    that uploads every 10 minutes is not offline between its uploads (docs/loggers.md).
    Defaults live on the class so a partial override from the environment keeps them.
    """

    upload_interval: timedelta = Field(
        default=timedelta(minutes=1), gt=timedelta(0), description="Slowest expected upload."
    )
    offline_missed_intervals: int = Field(
        default=10, ge=1, description="Offline after this many intervals with no frame."
    )
    offline_missed_uploads: int = Field(
        default=3,
        ge=1,
        description="…or after this many of the logger's own upload intervals, if longer.",
    )


class ProcessorConfig(BaseModel):
    """Windowing and rule configuration (documented defaults; see the README)."""

    model_config = ConfigDict(frozen=True)

    minute_grace: timedelta = Field(
        default=timedelta(seconds=90),
        description="Wait after a minute ends before deriving it from real-time samples.",
    )
    hour_grace: timedelta = Field(
        default=timedelta(minutes=3),
        description="The last minute record of an hour arrives just after it; wait this long.",
    )
    hour_lateness: timedelta = Field(
        default=timedelta(minutes=30),
        description="Late minutes up to this after the close re-open the hour in memory.",
    )
    day_grace: timedelta = Field(
        default=timedelta(minutes=15), description="Wait after midnight (+08:00) to close a day."
    )
    day_lateness: timedelta = Field(
        default=timedelta(hours=2), description="Late hours up to this re-open the day in memory."
    )
    backfill_horizon: timedelta = Field(
        default=timedelta(hours=48),
        description="Back-filled (补传) minute and hour data up to this long after its period "
        "ended recompute and re-judge the period as a new revision; older data is reported.",
    )
    max_clock_skew: timedelta | None = Field(
        default=timedelta(days=1),
        description="Readings dated further ahead of receipt are refused by the windows.",
    )
    clock_lead_tolerance: timedelta = Field(
        default=timedelta(minutes=5),
        ge=timedelta(0),
        description="A frame dated ahead of its receipt moves the stack's clock at most this "
        "far ahead of the receipt time.",
    )
    default_min_interval: timedelta = Field(
        default=timedelta(minutes=1),
        gt=timedelta(0),
        description="Minute-data interval assumed until the registry or the traffic says.",
    )
    default_rtd_interval: timedelta = Field(
        default=timedelta(seconds=30),
        gt=timedelta(0),
        description="Real-time interval assumed until the registry or the traffic says.",
    )
    realtime_min_samples: int = Field(
        default=2,
        ge=1,
        description="Real-time samples for a platform-derived minute (loggers without 2051), "
        "or every sample the minute can hold when the logger sends fewer.",
    )
    logger_minutes_horizon: timedelta = Field(
        default=timedelta(hours=2),
        description="After a logger minute (2051), derived minutes are ignored this long.",
    )
    provisional_min_minutes: int = Field(
        default=45,
        ge=1,
        description="Valid minutes covered before the rolling 60-min mean may alarm.",
    )
    mismatch_window: int = Field(
        default=4, ge=1, description="Logger-vs-platform hours looked at for a mismatch alert."
    )
    mismatch_min_hours: int = Field(
        default=3,
        ge=1,
        description="Disagreeing hours among them that raise logger_hour_mismatch.",
    )
    averaging: AveragingRules = DEFAULT_RULES
    quality: StreamQualityConfig = StreamQualityConfig()
    alerts: AlertPolicy = AlertPolicy()


class Outputs(BaseModel):
    """What one call produced: aggregates for the minute/hour/day topics and alert events."""

    aggregates: list[AggregateRecord] = Field(default_factory=list)
    alerts: list[AlertEvent] = Field(default_factory=list)
    late: list[str] = Field(default_factory=list, description="Too-late items, with reasons.")

    def extend(self, other: Outputs) -> None:
        """Append another call's outputs."""
        self.aggregates.extend(other.aggregates)
        self.alerts.extend(other.alerts)
        self.late.extend(other.late)
