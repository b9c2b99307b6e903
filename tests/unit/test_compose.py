"""docker-compose.yml cannot run here (no Docker engine): check it as `docker compose config` would.

The checks are the ones that break a real `docker compose up`: every service has a pinned
image (or our build), a health check where others wait for it, `depends_on` conditions that
name existing services, volumes that are declared, no secret values in the file, every
STACKWATCH_* variable a real setting, and every stackwatch command one the CLI has.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from commands import app
from stackwatch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def test_the_full_stack_is_there() -> None:
    assert {
        "kafka",
        "timescaledb",
        "grafana",
        "prometheus",
        "gateway",
        "worker",
        "sinks",
        "simulator",
        "mailpit",
        "migrate",
        "notifier",
        "api",
    } <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned(name: str) -> None:
    image = SERVICES[name]["image"]
    repo, _, tag = image.rpartition(":")
    assert repo and tag, f"{name}: image {image!r} has no tag"
    assert tag != "latest"
    assert re.match(r"^v?\d+\.\d+", tag), f"{name}: tag {tag!r} is not a version"


def test_official_images_for_infrastructure() -> None:
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert SERVICES["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana:")
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:")


def test_depends_on_waits_for_health_of_services_that_have_health_checks() -> None:
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            condition = cond["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{dep} has no healthcheck"
            else:
                assert condition == "service_completed_successfully"
                assert SERVICES[dep].get("restart") == "no"


@pytest.mark.parametrize(
    "name", ["kafka", "timescaledb", "gateway", "worker", "sinks", "notifier", "api", "grafana"]
)
def test_long_running_services_have_health_checks(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert check["retries"] >= 3


def test_named_volumes_are_declared() -> None:
    declared = set(COMPOSE["volumes"])
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"
            else:
                assert (ROOT / source).exists(), f"{name} mounts missing path {source}"


def test_no_secret_values_in_the_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for match in re.finditer(r"^\s*([A-Z_]*(?:PASSWORD|TOKEN|SECRET)[A-Z_]*):\s*(\S+)", text, re.M):
        value = match.group(2)
        assert value.startswith("${"), f"literal secret for {match.group(1)}: {value}"
    example = (ROOT / ".env.example").read_text()
    for line in example.splitlines():
        if re.match(r"^[A-Z_]*(PASSWORD|TOKEN)=", line):
            assert line.endswith("="), f".env.example must not carry a value: {line}"


def _env_to_setting(name: str) -> list[str]:
    return name.removeprefix("STACKWATCH_").lower().split("__")


def test_every_stackwatch_variable_is_a_setting() -> None:
    for name, svc in SERVICES.items():
        for var in svc.get("environment", {}) or {}:
            if not var.startswith("STACKWATCH_"):
                continue
            model: Any = Settings
            for part in _env_to_setting(var):
                assert part in model.model_fields, f"{name}: {var} is not a setting"
                model = model.model_fields[part].annotation


def _resolve(words: list[str]) -> Any:
    """Follow `words` down the CLI's command tree; the leaf command they name, if any.

    (Typer vendors its own click, so groups are recognised by their `commands`, not by type.)
    """
    cmd: Any = typer.main.get_command(app)
    for word in words:
        if not hasattr(cmd, "commands"):
            return cmd
        sub = cmd.commands.get(word)
        if sub is None:
            return None
        cmd = sub
    return None if hasattr(cmd, "commands") else cmd


@pytest.mark.parametrize(
    "name", sorted(n for n, s in SERVICES.items() if (s.get("command") or [""])[0] == "stackwatch")
)
def test_every_command_exists_in_the_cli(name: str) -> None:
    command = SERVICES[name]["command"]
    leaf = _resolve(command[1:])
    assert leaf is not None, f"{name}: `{' '.join(command)}` is not a stackwatch command"
    assert leaf.name == command[1] or leaf.name == command[2], leaf.name
    options = {
        opt
        for param in leaf.params
        for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
    }
    for word in command[1:]:
        if word.startswith("--"):
            assert word in options, f"{name}: {leaf.name} has no option {word}"


def test_notifier_routes_file_is_valid() -> None:
    from stackwatch.notify.config import NotifyConfig

    command = SERVICES["notifier"]["command"]
    routes = command[command.index("--routes") + 1]
    assert routes.startswith("/app/")
    config = NotifyConfig.load(ROOT / routes.removeprefix("/app/"))
    assert config.routes


def test_prometheus_scrapes_every_stackwatch_process() -> None:
    prom = yaml.safe_load((ROOT / "dashboards/prometheus/prometheus.yml").read_text())
    targets = {
        t for job in prom["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    assert {"gateway:9308", "worker:9308", "sinks:9308", "notifier:9308"} <= targets
    assert Settings().metrics_port == 9308


def test_every_scraped_process_serves_metrics_on_the_scraped_port() -> None:
    """A target Prometheus scrapes must be served: the gateway and the notifier only with
    `--metrics-port`, the worker and sinks on `metrics_port` (9308 by default)."""
    prom = yaml.safe_load((ROOT / "dashboards/prometheus/prometheus.yml").read_text())
    targets = [
        t for job in prom["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    for target in targets:
        service, port = target.split(":")
        command: list[str] = SERVICES[service]["command"]
        if "--metrics-port" in command:
            assert command[command.index("--metrics-port") + 1] == port, service
        else:
            assert command[1:3] in (["worker", "run"], ["sinks", "run"]), (
                f"{service} serves no /metrics: add --metrics-port {port}"
            )
            assert str(Settings().metrics_port) == port


# ------------------------------------------------------------------ issue #15: boot and privilege
# (tests/e2e/test_compose_boot.py runs the file; these say what it must keep saying.)

STACKWATCH_SERVICES = sorted(
    n for n, s in SERVICES.items() if str(s.get("image", "")).startswith("stackwatch:")
)


def test_only_the_loggers_port_is_published_beyond_loopback() -> None:
    for name, svc in SERVICES.items():
        for port in (str(p) for p in svc.get("ports", [])):
            if port == "9212:9212":
                assert name == "gateway"
                continue
            assert port.startswith(("127.0.0.1:", "${GRAFANA_BIND:-127.0.0.1}:")), (name, port)
    assert SERVICES["grafana"]["ports"] == ["${GRAFANA_BIND:-127.0.0.1}:3000:3000"]


def test_demo_services_are_in_the_demo_profile() -> None:
    assert SERVICES["simulator"]["profiles"] == ["demo"]
    assert SERVICES["mailpit"]["profiles"] == ["demo"]
    assert "--write-registry" not in SERVICES["simulator"]["command"]
    default = {n for n, s in SERVICES.items() if not s.get("profiles")}
    for name in default:  # nothing of the default profile waits for a demo service
        assert set(SERVICES[name].get("depends_on") or {}) <= default, name


@pytest.mark.parametrize("name", STACKWATCH_SERVICES)
def test_the_registry_is_an_operator_file_mounted_read_only(name: str) -> None:
    svc = SERVICES[name]
    mounts = [str(m) for m in svc.get("volumes", [])]
    assert not any(m.startswith("registry:") for m in mounts), "a shared writable volume"
    if name in ("gateway", "worker", "sinks", "notifier"):
        assert "./registry:/app/registry:ro" in mounts
        registry = svc["environment"]["STACKWATCH_GATEWAY__REGISTRY_FILE"]
        assert registry.startswith("/app/registry/${REGISTRY_FILE:?")
    for mount in mounts:  # every bind mount into our image is read-only
        if mount.startswith((".", "/")):
            assert mount.endswith(":ro"), (name, mount)


def test_the_registry_example_is_the_default_and_has_no_clear_password() -> None:
    from stackwatch.registry import StackRegistry

    example = ROOT / "registry" / "registry.example.yaml"
    assert "REGISTRY_FILE=registry.example.yaml" in (ROOT / ".env.example").read_text()
    stacks = yaml.safe_load(example.read_text())["stacks"]
    assert stacks and all("password" not in s for s in stacks)
    registry = StackRegistry.load(example)
    # The demo scenario's simulated loggers send 123456 (simulators/scenarios/demo.yaml).
    assert all(s.password_matches("123456") for s in registry.stacks)
    assert not any(s.password_matches("1234567") for s in registry.stacks)


def _dsn_user(name: str) -> str | None:
    url = SERVICES[name]["environment"].get("STACKWATCH_DATABASE_URL")
    return None if url is None else str(url).split("://", 1)[1].split(":", 1)[0]


def test_each_process_logs_in_with_least_privilege() -> None:
    assert _dsn_user("migrate") == "stackwatch"  # the image's bootstrap user: DDL and logins
    assert SERVICES["migrate"]["command"] == ["stackwatch", "db", "migrate", "--logins"]
    for name in ("sinks", "notifier", "api"):
        assert _dsn_user(name) == "${DB_WRITER_USER", name  # …:-stackwatch_app}
    assert "--no-migrate" in SERVICES["sinks"]["command"]  # the writer may not run DDL
    for name in ("gateway", "worker"):
        assert _dsn_user(name) is None, f"{name} has no business in the database"
    grafana = SERVICES["grafana"]["environment"]
    assert "POSTGRES_PASSWORD" not in grafana
    datasources = yaml.safe_load(
        (ROOT / "dashboards/provisioning/datasources/stackwatch.yaml").read_text()
    )["datasources"]
    (pg,) = [d for d in datasources if "postgres" in d["type"]]
    assert pg["user"] == "${DB_READER_USER}"
    assert pg["secureJsonData"]["password"] == "${DB_READER_PASSWORD}"
    assert {"DB_READER_USER", "DB_READER_PASSWORD"} <= set(grafana)


def test_kafka_durability_settings_suit_the_one_broker() -> None:
    for name in STACKWATCH_SERVICES:
        env = SERVICES[name]["environment"]
        assert env["STACKWATCH_KAFKA__REPLICATION_FACTOR"] == "1"
        assert env["STACKWATCH_KAFKA__MIN_INSYNC_REPLICAS"] == "1"
        assert env["STACKWATCH_KAFKA__IDEMPOTENT_PRODUCERS"] == "true"
    assert SERVICES["kafka"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"


@pytest.mark.parametrize("name", ["worker", "sinks", "notifier"])
def test_state_lives_in_a_volume_of_its_own(name: str) -> None:
    assert SERVICES[name]["environment"]["STACKWATCH_DATA_DIR"] == "/var/lib/stackwatch"
    assert f"{name}-data:/var/lib/stackwatch" in SERVICES[name]["volumes"]
