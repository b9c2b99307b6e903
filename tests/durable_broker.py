"""A Tansu broker that survives a restart: its topics live in moto's S3 server on loopback.

The wheel's Tansu has only the `memory://` and `s3://` storage engines; tests that stop the
broker mid-stream and start it again on the same port need the S3 one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from embedded.ports import stable_port
from embedded.process import terminate
from embedded.tansu import start_tansu


class S3Server:
    """moto's S3 server on loopback: the durable storage of a Tansu that is restarted."""

    def __init__(self, tmp: Path) -> None:
        self.port = stable_port()
        self.log = (tmp / "moto.log").open("ab")
        moto = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.put(f"{self.url}/tansu", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.3)

    def tansu_env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT": self.url, "AWS_ACCESS_KEY_ID": "stackwatch",
                "AWS_SECRET_ACCESS_KEY": "stackwatch", "AWS_DEFAULT_REGION": "eu-west-2",
                "AWS_ALLOW_HTTP": "true"}

    def stop(self) -> None:
        terminate(self.proc.pid)
        self.proc.wait(10)
        self.log.close()


class DurableBroker:
    """A Tansu on S3 storage that can be stopped and started again on the same port."""

    def __init__(self, tmp: Path, s3: S3Server) -> None:
        self.dir, self.port, self.s3 = tmp / "tansu", stable_port(), s3
        self.record: Any = None

    def start(self) -> Any:
        self.record = start_tansu(self.dir, port=self.port, storage="s3://tansu/",
                                  storage_env=self.s3.tansu_env())
        return self.record

    def stop(self) -> None:
        if self.record is not None:
            terminate(self.record.pid)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"
