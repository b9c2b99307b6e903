"""The routing file: durations, references, secrets, environment expansion, the example."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from stackwatch.alerts import Severity
from stackwatch.notify import NotifyConfig, NotifyConfigError
from stackwatch.notify.config import EmailChannel, WebhookChannel

EXAMPLE = Path(__file__).resolve().parents[2] / "sinks" / "notify.example.yaml"
EXAMPLE_ENV = {
    "HANDAN_DINGTALK_TOKEN": "tok-dd-123",
    "HANDAN_DINGTALK_SECRET": "SECxyz",
    "LI_WECOM_KEY": "key-wc-456",
    "TICKETING_TOKEN": "tick-789",
}

MINIMAL = """
recipients:
  - name: duty
    channels: [{type: email, address: duty@example.cn}]
groups:
  - {name: L0, members: [duty]}
routes:
  - {name: all, group: L0, repeat_interval: %s}
"""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1d", 86400), ("90", 90), ("PT2M", 120)],
)
def test_durations(text: str, seconds: int) -> None:
    cfg = NotifyConfig.from_yaml(MINIMAL % text, environ={})
    assert cfg.timing(cfg.routes[0]).repeat_interval == timedelta(seconds=seconds)


def test_timing_defaults_are_alertmanagers() -> None:
    cfg = NotifyConfig.from_yaml(MINIMAL % "1h", environ={})
    t = cfg.timing(cfg.routes[0])
    assert (t.group_wait, t.group_interval, t.repeat_interval) == (
        timedelta(seconds=30),
        timedelta(minutes=5),
        timedelta(hours=1),
    )


def test_bad_duration_is_a_clear_error() -> None:
    with pytest.raises(NotifyConfigError, match="repeat_interval"):
        NotifyConfig.from_yaml(MINIMAL % "soon", environ={})


def test_unknown_group_and_recipient_are_rejected() -> None:
    text = MINIMAL.replace("group: L0", "group: L9") % "1h"
    with pytest.raises(NotifyConfigError, match="unknown group 'L9'"):
        NotifyConfig.from_yaml(text, environ={})
    text = MINIMAL.replace("members: [duty]", "members: [nobody]") % "1h"
    with pytest.raises(NotifyConfigError, match="nobody"):
        NotifyConfig.from_yaml(text, environ={})


def test_invalid_channels() -> None:
    base = "recipients: [{name: r, channels: [%s]}]"
    for channel, message in [
        ("{type: webhook, url: 'ftp://x/y'}", "http"),
        ("{type: email, address: not-an-address}", "not an e-mail address"),
        ("{type: webhook, format: wecom, url: 'https://x/y', sign_secret: s}", "dingtalk"),
        ("{type: sms, number: '123'}", "type"),
    ]:
        with pytest.raises(NotifyConfigError, match=message):
            NotifyConfig.from_yaml(base % channel, environ={})


def test_not_yaml_or_not_a_mapping() -> None:
    with pytest.raises(NotifyConfigError, match="YAML"):
        NotifyConfig.from_yaml("routes: [", environ={})
    with pytest.raises(NotifyConfigError, match="mapping"):
        NotifyConfig.from_yaml("- a\n- b\n", environ={})


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(NotifyConfigError, match=r"absent\.yaml"):
        NotifyConfig.load(tmp_path / "absent.yaml")


def test_environment_expansion_and_secrecy() -> None:
    text = """
recipients:
  - name: robot
    channels: [{type: webhook, format: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=${TOKEN}"}]
"""
    cfg = NotifyConfig.from_yaml(text, environ={"TOKEN": "s3cr3t"})
    channel = cfg.recipients[0].channels[0]
    assert isinstance(channel, WebhookChannel)
    assert channel.url.get_secret_value().endswith("access_token=s3cr3t")
    assert "s3cr3t" not in repr(cfg)
    assert "s3cr3t" not in channel.target
    assert channel.target == "dingtalk https://oapi.dingtalk.com/robot/send"
    with pytest.raises(NotifyConfigError, match="TOKEN is not set"):
        NotifyConfig.from_yaml(text, environ={})


def test_example_file_loads() -> None:
    cfg = NotifyConfig.load(EXAMPLE, environ=EXAMPLE_ENV)
    assert [r.name for r in cfg.routes] == [
        "tickets",
        "steel-plant-own",
        "handan-alarms",
        "handan-warnings",
    ]
    alarms = cfg.route("handan-alarms")
    assert alarms.match.min_severity is Severity.ALARM
    assert [(s.after, s.group) for s in alarms.escalation] == [
        (timedelta(minutes=30), "handan-supervisors"),
        (timedelta(hours=1), "province"),
    ]
    assert cfg.timing(alarms).repeat_interval == timedelta(hours=2)
    robot = cfg.recipient("handan-duty-robot").channels[0]
    assert isinstance(robot, WebhookChannel) and robot.sign_secret is not None
    assert robot.sign_secret.get_secret_value() == "SECxyz"
    mail = cfg.recipient("handan-duty-mail").channels[0]
    assert isinstance(mail, EmailChannel)
    assert mail.address == "duty.handan@monitoring-centre.example.cn"
