"""`stackwatch gateway run`: configuration errors are reported, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commands import app
from commands.gateway import load_registry


@pytest.fixture(autouse=True)
def _keep_root_logging() -> Iterator[None]:
    """The CLI installs a handler on CliRunner's temporary stderr; put the old ones back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_registry_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(
        "stacks:\n"
        "  - {stack_id: k1, mn: 41120001CM0001, password: '123456', sector: cement,"
        " process: kiln_tail}\n",
        encoding="utf-8",
    )
    registry = load_registry(path)
    stack = registry.by_mn("41120001CM0001")
    assert stack is not None and stack.password_matches("123456")


def test_broken_registry_file_exits_with_message(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text("stacks:\n  - {stack_id: k1, mn: M1, sector: nowhere, process: x}\n")
    result = CliRunner().invoke(app, ["gateway", "run", "--registry", str(path)])
    assert result.exit_code == 1
    assert "cannot load configuration" in result.output and "unknown sector" in result.output


def test_missing_registry_file_exits_with_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["gateway", "run", "--registry", str(tmp_path / "absent.yaml")]
    )
    assert result.exit_code == 1 and "cannot load configuration" in result.output
