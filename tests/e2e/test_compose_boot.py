"""`docker compose up` on fresh volumes, without Docker: docker-compose.yml must boot.

No Docker engine runs here, so this test plays compose's part with the same file: it reads
docker-compose.yml (PyYAML), interpolates it with `.env.example` whose empty secrets are
filled in (what an operator does after `cp .env.example .env`), and starts every stackwatch
service of the default profile with its own command and environment, in compose's dependency
order (`depends_on` and its conditions), each from an empty working directory (the image's
/app, which the unprivileged user cannot write), with:

* the images' hosts mapped to the embedded servers: `kafka` → the session's Tansu,
  `timescaledb` → the session's PostgreSQL 18 with a fresh database owned by the image's
  POSTGRES_USER (a superuser, as the image's init makes it);
* each container's ports mapped to free loopback ports (a container has its own network
  namespace; here they share one), `0.0.0.0` binds to 127.0.0.1;
* named volumes → empty temporary directories, a read-only bind mount → a copy of the
  repository directory that must not change, files the Dockerfile COPYs → the repository's.

Two things are broker capabilities, not compose's: Tansu needs the `tansu` broker profile and
cannot grant producer ids, so those two settings are replaced. Each service's health check
runs translated to the host (python → this interpreter, its ports → the mapped ones); a
long-running service that exits fails the test at once (compose would restart it forever:
the deadlock of issue #15). The stack is up when every health check is green; then one HJ 212
frame from the example registry's first MN goes over TCP to the gateway and must be answered
and reach `raw_frames` and `readings`, every Prometheus target must serve /metrics, and
Grafana's datasource login must be the read-only reader.

`compose_before_15.yml` is the file before issue #15 (the registry on a shared volume that
only the simulator writes, after the gateway is healthy): it must fail here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from urllib.request import urlopen

import psycopg
import pytest
import yaml
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from embedded.ports import free_port
from simulators.scenario import load_scenario
from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames
from stackwatch.settings import Settings, TopicSettings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STACKWATCH_IMAGE = "stackwatch:"
#: Waiting for one service's condition; generous for two busy cores (Faust starts slowly).
DEADLINE_S = 240.0
#: The settings behind each container port a stackwatch process may open, and their defaults.
PORT_SETTINGS = {
    "STACKWATCH_METRICS_PORT": Settings.model_fields["metrics_port"].default,
    "STACKWATCH_WEB_PORT": Settings.model_fields["web_port"].default,
    "STACKWATCH_GATEWAY__PORT": Settings().gateway.port,
    "STACKWATCH_ACK_PAGE__PORT": Settings().ack_page.port,
}
PORT_OPTIONS = ("--port", "--metrics-port")


class BootError(AssertionError):
    """The stack did not come up the way compose would bring it up."""


# ------------------------------------------------------------------------ compose semantics

_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation: ${V}, ${V:-default}, ${V-default}, ${V:?err}, $$."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if empty else str(value)
        if op in (":?", "?"):
            if empty:
                raise BootError(f"compose refuses to start: {name}: {arg}")
            return str(value)
        return value or ""

    return _VAR_RE.sub(repl, text)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(x, env) for x in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def dotenv(text: str) -> dict[str, str]:
    """`cp .env.example .env` and fill it in: every empty value gets a random secret."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        env[key.strip()] = value.strip() or secrets.token_urlsafe(32)
    return env


def dockerfile_image(text: str) -> tuple[dict[str, str], dict[str, Path], list[str]]:
    """(ENV, COPY destination → repository path, directories RUN mkdir makes) of the image."""
    workdir = "/"
    env: dict[str, str] = {}
    copies: dict[str, Path] = {}
    dirs: list[str] = []
    for raw in re.sub(r"\\\n", " ", text).splitlines():
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "WORKDIR":
            workdir = words[1]
        elif words[0] == "ENV":
            env.update(tuple(w.split("=", 1)) for w in words[1:] if "=" in w)  # type: ignore[misc]
        elif words[0] == "COPY" and len(words) == 3 and words[2] != "./":
            dest = words[2] if words[2].startswith("/") else f"{workdir}/{words[2].lstrip('./')}"
            copies[dest] = ROOT / words[1]
        elif words[0] == "RUN":
            for m in re.finditer(r"mkdir -p ((?:/\S+\s*)+)", raw):
                dirs += [d for d in m.group(1).split() if d.startswith("/")]
    return env, copies, dirs


def dependency_order(services: Mapping[str, Any]) -> list[str]:
    """Services so that each comes after everything it depends on (compose's start order)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise BootError(f"dependency cycle: {' → '.join((*path, name))}")
        if name in seen:
            return
        for dep in services[name].get("depends_on") or {}:
            visit(dep, (*path, name))
        seen.add(name)
        order.append(name)

    for name in services:
        visit(name, ())
    return order


def _seconds(text: str | None, default: float) -> float:
    if not text:
        return default
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    assert m, text
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*")):
        digest.update(str(f.relative_to(path)).encode())
        if f.is_file():
            digest.update(f.read_bytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------ the host side


@dataclass
class Service:
    """One stackwatch container, translated to a host process."""

    name: str
    spec: dict[str, Any]
    ports: dict[int, int] = field(default_factory=dict)  # container port → host port
    mounts: dict[str, Path] = field(default_factory=dict)  # container path → host path
    workdir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def one_shot(self) -> bool:
        return str(self.spec.get("restart", "no")) == "no"

    def log_tail(self, lines: int = 25) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Host:
    """The embedded servers standing in for the images, and the translation rules."""

    kafka: str
    pg_host: str
    pg_port: int
    database: str
    services: dict[str, Service]

    def address(self, service: str, port: int) -> str:
        if service == "kafka":
            return self.kafka
        if service == "timescaledb":
            return f"{self.pg_host}:{self.pg_port}"
        return f"127.0.0.1:{self.services[service].ports[port]}"

    def translate(self, svc: Service, value: str) -> str:
        """A value of the container's world (hosts, paths, binds) in the host's world."""
        if value == "0.0.0.0":
            return "127.0.0.1"
        for prefix in sorted(svc.mounts, key=len, reverse=True):
            if value == prefix or value.startswith(prefix + "/"):
                return str(svc.mounts[prefix]) + value[len(prefix):]
        if value.startswith(("postgresql://", "postgres://")):
            parts = urlsplit(value)
            if parts.hostname == "timescaledb":
                auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
                netloc = f"{auth}{self.pg_host}:{self.pg_port}"
                return urlunsplit(parts._replace(netloc=netloc, path=f"/{self.database}"))
        names = "|".join(re.escape(n) for n in ("kafka", "timescaledb", *self.services))
        return re.sub(rf"\b({names}):(\d+)\b",
                      lambda m: self.address(m.group(1), int(m.group(2))), value)


def _mounts(svc: Service, volumes: dict[str, Path], ro_copies: dict[str, Path],
            copies: Mapping[str, Path], image_dirs: list[str], base: Path) -> None:
    for dest, source in copies.items():
        svc.mounts[dest] = source
    for directory in image_dirs:  # the image's own layer: writable, private to the container
        own = base / "layers" / svc.name / directory.strip("/").replace("/", "_")
        own.mkdir(parents=True, exist_ok=True)
        svc.mounts[directory] = own
    for entry in svc.spec.get("volumes") or []:
        source, target, *mode = entry.split(":")
        if source.startswith((".", "/")):
            if mode != ["ro"]:
                raise BootError(f"{svc.name}: bind mount {entry} is writable")
            if source not in ro_copies:
                copy = base / "ro" / uuid.uuid4().hex[:8]
                shutil.copytree(ROOT / source, copy)
                for path in [copy, *copy.rglob("*")]:
                    path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
                ro_copies[source] = copy
            svc.mounts[target] = ro_copies[source]
        else:
            volume = volumes.setdefault(source, base / "volumes" / source)
            volume.mkdir(parents=True, exist_ok=True)
            svc.mounts[target] = volume


def _command_ports(command: list[str]) -> list[int]:
    return [int(command[i + 1]) for i, w in enumerate(command[:-1]) if w in PORT_OPTIONS]


def _environment(host: Host, svc: Service, image_env: Mapping[str, str],
                 topic_prefix: str) -> dict[str, str]:
    declared = {**image_env, **{k: str(v) for k, v in (svc.spec.get("environment") or {}).items()}}
    env = {k: host.translate(svc, v) for k, v in declared.items()}
    for key, default in PORT_SETTINGS.items():
        env[key] = str(svc.ports[int(declared.get(key, default))])
    # Broker capabilities: Tansu stands in for Apache Kafka.
    env["STACKWATCH_BROKER_PROFILE"] = "tansu"
    env.pop("STACKWATCH_KAFKA__IDEMPOTENT_PRODUCERS", None)
    # The session broker is shared with other tests: this stack's topics are its own.
    for name, info in TopicSettings.model_fields.items():
        if isinstance(info.default, str):
            env[f"STACKWATCH_TOPICS__{name.upper()}"] = f"{topic_prefix}.{info.default}"
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    return {**base, "PYTHONUNBUFFERED": "1", **env}


def _argv(host: Host, svc: Service, words: list[str]) -> list[str]:
    out: list[str] = []
    for i, word in enumerate(words):
        if i > 0 and words[i - 1] in PORT_OPTIONS:
            out.append(str(svc.ports[int(word)]))
        elif i == 0 and word == "stackwatch":
            out.append(str(Path(sys.executable).with_name("stackwatch")))
        elif i == 0 and word == "python":
            out.append(sys.executable)
        else:
            out.append(host.translate(svc, word))
    return out


_LOOPBACK_PORT = re.compile(r"(127\.0\.0\.1|localhost)(['\"]?\s*[:,]\s*)(\d+)")


def healthcheck(host: Host, svc: Service) -> list[str] | None:
    """The service's health check as a host command (None: it has none)."""
    check = svc.spec.get("healthcheck")
    if not check:
        return None
    test = list(check["test"])
    kind, words = test[0], test[1:]
    words = [_LOOPBACK_PORT.sub(lambda m: f"127.0.0.1{m.group(2)}{svc.ports[int(m.group(3))]}",
                                w) for w in words]
    if kind == "CMD-SHELL":
        return ["sh", "-c", host.translate(svc, words[0])]
    assert kind == "CMD", kind
    return _argv(host, svc, words)


def is_healthy(host: Host, svc: Service) -> bool:
    argv = healthcheck(host, svc)
    assert argv is not None
    timeout = _seconds(svc.spec["healthcheck"].get("timeout"), 30)
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout,
                              check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _exited(svc: Service) -> int | None:
    return None if svc.process is None else svc.process.poll()


def wait_healthy(host: Host, svc: Service) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        code = _exited(svc)
        if code is not None:
            raise BootError(f"{svc.name} exited with code {code} before it was healthy "
                            f"(compose restarts it forever):\n{svc.log_tail()}")
        if is_healthy(host, svc):
            return
        time.sleep(1.0)
    raise BootError(f"{svc.name} not healthy after {DEADLINE_S:.0f} s:\n{svc.log_tail()}")


def wait_completed(svc: Service) -> None:
    assert svc.process is not None
    try:
        code = svc.process.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise BootError(f"{svc.name} did not complete:\n{svc.log_tail()}") from None
    if code != 0:
        raise BootError(f"{svc.name} failed with code {code}:\n{svc.log_tail()}")


# --------------------------------------------------------------------------------- booting


@dataclass
class Stack:
    """A booted stack: its services, database and the checks' inputs."""

    host: Host
    compose: dict[str, Any]
    env: dict[str, str]
    admin_dsn: str
    ro_copies: dict[str, Path]
    ro_digests: dict[str, str]


def _bootstrap_database(pg_dsn: str, timescaledb: Mapping[str, Any], name: str) -> str:
    """What the TimescaleDB image's init does on an empty volume: POSTGRES_USER as a
    superuser and POSTGRES_DB owned by it (here under a fresh name)."""
    env = timescaledb.get("environment") or {}
    user = env.get("POSTGRES_USER", "postgres")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is None:
            with contextlib.suppress(errors.DuplicateObject):
                conn.execute(f'CREATE ROLE "{user}" SUPERUSER LOGIN')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
    params: dict[str, Any] = conninfo_to_dict(pg_dsn)
    return make_conninfo("", **{**params, "dbname": name})


@contextlib.contextmanager
def boot(compose_text: str, env_example: str, kafka: str, pg_dsn: str) -> Iterator[Stack]:
    """Start the default profile's stackwatch services as compose would; stop them after."""
    env = dotenv(env_example)
    compose = _interpolate_tree(yaml.safe_load(compose_text), env)
    image_env, copies, image_dirs = dockerfile_image((ROOT / "Dockerfile").read_text())
    all_services: dict[str, Any] = compose["services"]
    wanted = {n: s for n, s in all_services.items() if not s.get("profiles")}
    ours = {n: s for n, s in wanted.items() if str(s.get("image", "")).startswith(STACKWATCH_IMAGE)}
    provided = {"kafka", "timescaledb"}
    for name, spec in ours.items():
        for dep in spec.get("depends_on") or {}:
            if dep not in ours and dep not in provided:
                raise BootError(f"{name} depends on {dep}, which this host cannot provide")
    name = f"t_boot_{uuid.uuid4().hex[:10]}"
    pg = conninfo_to_dict(pg_dsn)
    base = Path(tempfile.mkdtemp(prefix="stackwatch-compose-"))
    services = {n: Service(n, s) for n, s in ours.items()}
    host = Host(kafka, str(pg["host"]), int(str(pg["port"])), name, services)
    admin = _bootstrap_database(pg_dsn, all_services["timescaledb"], name)
    volumes: dict[str, Path] = {}
    ro_copies: dict[str, Path] = {}
    topic_prefix = f"boot{uuid.uuid4().hex[:6]}"
    for svc in services.values():
        declared = {k: str(v) for k, v in (svc.spec.get("environment") or {}).items()}
        container_ports = {int(declared.get(k, d)) for k, d in PORT_SETTINGS.items()}
        container_ports |= set(_command_ports(list(svc.spec.get("command") or [])))
        svc.ports = {p: free_port() for p in container_ports}
        _mounts(svc, volumes, ro_copies, copies, image_dirs, base)
        svc.workdir = base / "workdir" / svc.name
        svc.workdir.mkdir(parents=True)
    digests = {src: tree_digest(path) for src, path in ro_copies.items()}
    stack = Stack(host, compose, env, admin, ro_copies, digests)
    try:
        for svc_name in dependency_order({**ours, **{p: {} for p in provided}}):
            if svc_name in provided:
                continue
            svc = services[svc_name]
            for dep, cond in (svc.spec.get("depends_on") or {}).items():
                if dep in provided:
                    continue
                condition = cond.get("condition", "service_started")
                if condition == "service_healthy":
                    wait_healthy(host, services[dep])
                elif condition == "service_completed_successfully":
                    wait_completed(services[dep])
            svc.log = base / "logs" / f"{svc_name}.log"
            svc.log.parent.mkdir(exist_ok=True)
            with svc.log.open("wb") as out:
                svc.process = subprocess.Popen(
                    _argv(host, svc, [str(w) for w in svc.spec["command"]]),
                    env=_environment(host, svc, image_env, topic_prefix),
                    cwd=svc.workdir, stdout=out, stderr=subprocess.STDOUT,
                )
        for svc in services.values():
            if svc.one_shot:
                wait_completed(svc)
            elif healthcheck(host, svc) is not None:
                wait_healthy(host, svc)
            elif _exited(svc) is not None:
                raise BootError(f"{svc.name} exited:\n{svc.log_tail()}")
        yield stack
    finally:
        for svc in reversed(list(services.values())):
            if svc.process is not None and svc.process.poll() is None:
                svc.process.terminate()
        for svc in services.values():
            if svc.process is not None:
                try:
                    svc.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    svc.process.kill()
                    svc.process.wait(timeout=10)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            # The logins `migrate` created are cluster-wide: leave the cluster as found.
            for login in {env.get("DB_WRITER_USER"), env.get("DB_READER_USER")} - {None, ""}:
                with contextlib.suppress(errors.DependentObjectsStillExist):
                    conn.execute(f'DROP ROLE IF EXISTS "{login}"')
        for path in [base, *base.rglob("*")]:
            with contextlib.suppress(OSError):
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------- the checks


def send_frame(stack: Stack) -> tuple[str, str]:
    """One real-time upload from the example registry's first MN; returns (MN, 9014 answer)."""
    gateway = stack.host.services["gateway"]
    env = gateway.spec["environment"]
    registry_file = Path(stack.host.translate(gateway, env["STACKWATCH_GATEWAY__REGISTRY_FILE"]))
    first = yaml.safe_load(registry_file.read_text())["stacks"][0]
    mn = first["mn"]
    # The example holds the demo profile's loggers: the simulator knows their passwords.
    demo = {s.mn: s.password for s in load_scenario("demo").all_stacks()}
    assert mn in demo, f"{mn} of {registry_file.name} is not a demo logger"
    now = datetime.now(CST).replace(second=0, microsecond=0)
    (frame,) = build_frames(cn="2011", mn=mn, pw=demo[mn], data_time=now,
                            values={"a34013": {"Rtd": 3.2}, "a21026": {"Rtd": 12.5}}, ack=True)
    port = gateway.ports[Settings().gateway.port]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(frame.encode() if frame.endswith("\r\n") else (frame + "\r\n").encode())
        answer = b""
        while not answer.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return mn, answer.decode(errors="replace")


def wait_rows(stack: Stack, mn: str) -> tuple[list[str], int]:
    """(verdicts in raw_frames, readings) of `mn`, once the sinks have written both."""
    deadline = time.monotonic() + DEADLINE_S
    verdicts: list[str] = []
    readings = 0
    while time.monotonic() < deadline:
        with psycopg.connect(stack.admin_dsn) as conn:
            verdicts = [r[0] for r in conn.execute(
                "SELECT verdict FROM raw_frames WHERE mn = %s", (mn,)).fetchall()]
            readings = conn.execute("SELECT count(*) FROM readings WHERE mn = %s AND cn = '2011'",
                                    (mn,)).fetchone()[0]  # type: ignore[index]
        if verdicts and readings:
            break
        time.sleep(1.0)
    return verdicts, readings


def grafana_login(stack: Stack) -> str:
    """DSN of the Grafana PostgreSQL datasource, with Grafana's environment expanded."""
    provisioning = ROOT / "dashboards" / "provisioning" / "datasources"
    grafana_env = {k: str(v) for k, v in
                   (stack.compose["services"]["grafana"].get("environment") or {}).items()}
    for path in provisioning.glob("*.yaml"):
        text = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                      lambda m: grafana_env.get(m.group(1) or m.group(2), ""), path.read_text())
        for ds in yaml.safe_load(text)["datasources"]:
            if "postgres" in ds["type"]:
                params: dict[str, Any] = conninfo_to_dict(stack.admin_dsn)
                params.update(user=ds["user"], password=ds["secureJsonData"]["password"])
                return make_conninfo("", **params)
    raise AssertionError("no PostgreSQL datasource provisioned")


def check_stack(stack: Stack) -> None:
    mn, answer = send_frame(stack)
    assert ";CN=9014;" in answer, f"no 9014 answer from the gateway: {answer!r}"
    verdicts, readings = wait_rows(stack, mn)
    assert verdicts == ["accepted"], (verdicts, stack.host.services["sinks"].log_tail())
    assert readings == 2, (readings, stack.host.services["worker"].log_tail())  # a34013, a21026

    prom = yaml.safe_load((ROOT / "dashboards/prometheus/prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]]
    for target in targets:
        service, port = target.split(":")
        url = f"http://{stack.host.address(service, int(port))}/metrics"
        with urlopen(url, timeout=10) as response:
            assert response.status == 200 and b"# HELP" in response.read(), target

    with psycopg.connect(grafana_login(stack)) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (False,), "Grafana logs in as a superuser"
        assert conn.execute("SELECT count(*) FROM raw_frame_verdicts WHERE mn = %s",
                            (mn,)).fetchone() == (1,)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT text FROM raw_frames")

    for source, copy in stack.ro_copies.items():
        assert tree_digest(copy) == stack.ro_digests[source], f"{source} (:ro) was written"
    for svc in stack.host.services.values():
        assert svc.workdir is not None
        written = sorted(str(p.relative_to(svc.workdir)) for p in svc.workdir.rglob("*"))
        assert not written, f"{svc.name} wrote into the image's /app (read-only there): {written}"


def test_compose_boots_on_fresh_volumes_and_stores_a_frame(
    kafka_bootstrap: str, pg_dsn: str
) -> None:
    with boot((ROOT / "docker-compose.yml").read_text(), (ROOT / ".env.example").read_text(),
              kafka_bootstrap, pg_dsn) as stack:
        assert set(stack.host.services) == {"migrate", "gateway", "worker", "sinks", "notifier",
                                            "api"}  # simulator and Mailpit: demo profile
        check_stack(stack)


def test_the_compose_file_before_issue_15_does_not_boot(
    kafka_bootstrap: str, pg_dsn: str
) -> None:
    """The old file deadlocks: the registry it names is written only by the simulator, which
    waits for a healthy gateway, and the gateway cannot start without it."""
    old = (HERE / "compose_before_15.yml").read_text()
    with (
        pytest.raises(BootError, match=r"gateway exited with code 1.*\n(.|\n)*demo\.yaml"),
        boot(old, (ROOT / ".env.example").read_text(), kafka_bootstrap, pg_dsn) as stack,
    ):
        check_stack(stack)
