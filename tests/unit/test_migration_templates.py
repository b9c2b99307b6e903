"""Migrations written as templates render to the very text databases have applied.

0003's views (plain) and continuous aggregates (TimescaleDB) share one SELECT
(`sinks/sql_macros/compliance.sql.j2`). The runner records each migration's SHA-256 and
reports an applied migration whose text changed as edited (`stackwatch db status`), so the
rendered text must stay byte for byte what was applied: the checksums below are those of the
plain SQL files as they were applied (commit 80aa241, `sha256sum` of each file).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sinks.schema import EARLIER_CHECKSUMS, MIGRATIONS_DIR, Migration, Mode, discover, render

APPLIED_0003 = {
    Mode.PLAIN: "5ff7d36da4787f1cab1783327f6d67d111676f9b1558657a4dc90d498e23ebd1",
    Mode.TIMESCALE: "ccea18e2b26efe310bea16f0f403b4248913a2af75b8757748b04535ad4eea14",
}


def _version(mode: Mode, version: int) -> Migration:
    (migration,) = [m for m in discover(mode) if m.version == version]
    return migration


@pytest.mark.parametrize("mode", [Mode.PLAIN, Mode.TIMESCALE])
def test_rendered_compliance_migration_has_the_applied_checksum(mode: Mode) -> None:
    migration = _version(mode, 3)
    assert migration.path.name == "0003_compliance.sql.j2"
    assert migration.name == "compliance"
    # a database that applied the file before its comment-only edit is not "modified"
    assert migration.matches(APPLIED_0003[mode])


def test_rendered_templates_keep_their_transaction_marker() -> None:
    # continuous aggregates cannot be created inside a transaction; the plain views can
    assert _version(Mode.PLAIN, 3).transactional
    assert not _version(Mode.TIMESCALE, 3).transactional


def test_both_modes_define_the_same_two_views_from_one_select() -> None:
    plain, timescale = _version(Mode.PLAIN, 3).sql, _version(Mode.TIMESCALE, 3).sql
    for sql in (plain, timescale):
        assert "{{" not in sql and "{%" not in sql
        assert sql.count("FROM hour_aggregates") == 2
    assert "CREATE OR REPLACE VIEW compliance_daily AS" in plain
    assert "CREATE MATERIALIZED VIEW IF NOT EXISTS compliance_monthly" in timescale


#: The comment lines as they were applied (commit 80aa241), by file: today's file with these
#: lines put back must hash to the checksum databases recorded.
EARLIER_COMMENTS: dict[str, list[tuple[str, str]]] = {
    "0001_core.sql": [
        ("docs/hj212.md#raw-layer", "DOMAIN.md §4.3 item 1"),
        ("docs/limits.md#precedence-in-the-catalogue", "LIMITS.md N1"),
    ],
    "0003_compliance.sql.j2": [
        (
            "docs/hj75-data.md#validity-of-means, docs/limits.md#ultra-low-and-legal-checks",
            "DOMAIN.md §3.2, LIMITS.md N4",
        ),
        ("docs/limits.md#reference-o2-by-source: no O2", "LIMITS.md N3: no O2"),
    ],
    "0006_limit_verdicts.sql": [("docs/limits.md#catalogue-rows", "LIMITS.md id")],
}


@pytest.mark.parametrize("name", sorted(EARLIER_COMMENTS))
def test_edits_of_applied_migrations_changed_comments_only(name: str, tmp_path: Path) -> None:
    path = MIGRATIONS_DIR / name
    earlier = path.read_text(encoding="utf-8")
    for today, before in EARLIER_COMMENTS[name]:
        (line,) = [ln for ln in earlier.splitlines() if today in ln]
        code, _, comment = line.partition("--")
        assert today in comment and today not in code  # the edit is inside a comment
        earlier = earlier.replace(today, before)
    old_file = tmp_path / name
    old_file.write_text(earlier, encoding="utf-8")
    old_checksum = hashlib.sha256(render(old_file).encode()).hexdigest()
    assert EARLIER_CHECKSUMS[f"migrations/{name}"] == {old_checksum}
    (migration,) = [m for m in discover(Mode.PLAIN) if m.path == path]
    assert migration.checksum != old_checksum and migration.matches(old_checksum)
