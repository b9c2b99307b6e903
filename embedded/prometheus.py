"""Prometheus on loopback for the demo and the tests (Debian's `prometheus` binary).

The demo starts it when the binary is installed (`apt-get install prometheus`), scraping the
stackwatch processes it runs and loading the pipeline's alert rules; the tests start it to
run the Pipeline health dashboard's PromQL against real scrapes. Nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from embedded.ports import free_port

#: The pipeline's alert rules shipped with the repository (absent in a bare wheel install).
RULES_FILE = Path(__file__).resolve().parents[1] / "dashboards" / "prometheus" / "alerts.yml"


def prometheus_binary() -> str | None:
    """Path of the `prometheus` server binary, if installed."""
    return shutil.which("prometheus")


@dataclass
class RunningPrometheus:
    """A started Prometheus server; `stop()` terminates it."""

    proc: subprocess.Popen[bytes]
    url: str

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def write_config(
    path: Path, targets: Iterable[str], *, scrape_s: float, rule_files: Iterable[Path] = ()
) -> None:
    """A scrape config with one `stackwatch` job over `targets` (host:port)."""
    interval = f"{scrape_s:g}s"
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": interval, "evaluation_interval": interval},
                "rule_files": [str(p) for p in rule_files],
                "scrape_configs": [
                    {"job_name": "stackwatch", "static_configs": [{"targets": list(targets)}]}
                ],
            }
        )
    )


def start_prometheus(
    binary: str,
    data_dir: Path,
    targets: Iterable[str],
    *,
    scrape_s: float = 5.0,
    rule_files: Iterable[Path] = (),
    port: int | None = None,
    ready_timeout_s: float = 60.0,
) -> RunningPrometheus:
    """Start Prometheus on 127.0.0.1 with its TSDB and log in `data_dir`; wait until ready."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "prometheus.yml"
    write_config(config, targets, scrape_s=scrape_s, rule_files=rule_files)
    port = port or free_port()
    with (data_dir / "prometheus.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    running = RunningPrometheus(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(f"{running.url}/-/ready", timeout=1.0).status_code == 200:
                return running
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    running.stop()
    raise RuntimeError(f"prometheus not ready on {running.url} after {ready_timeout_s:g} s")


__all__ = ["RULES_FILE", "RunningPrometheus", "prometheus_binary", "start_prometheus"]
