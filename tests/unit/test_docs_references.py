"""The repository's references resolve inside the repository.

Code and docs cite the standards' clauses and the project's own reference pages
(``docs/<page>.md#<anchor>``). Two checks:

* no file names the external domain notes, which a reader of the project alone cannot open;
* every ``docs/<page>.md#<anchor>`` (and every relative ``page.md#anchor`` link inside a doc)
  names a page that exists and a heading whose GitHub anchor is ``anchor``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: The external notes' file names, spelled so that this file does not match itself.
EXTERNAL_NOTES = (b"DOMAIN" + b".md", b"LIMITS" + b".md")

#: Directories that are not the project's files: environments, VCS, caches, build output.
SKIP_DIRS = frozenset(
    {
        ".venv",
        "node_modules",
        ".git",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".hypothesis",
        ".stackwatch",
        "__pycache__",
    }
)

#: The one file besides this that must name the notes: it rebuilds the applied migrations'
#: earlier comment lines (which cited them) to prove the edit changed comments only.
MIGRATION_HISTORY_TEST = "tests/unit/test_migration_templates.py"

#: Text files whose references to docs are checked.
TEXT_SUFFIXES = frozenset(
    {".py", ".md", ".yaml", ".yml", ".sql", ".json", ".toml", ".txt", ".sh", ".html", ".j2"}
)

DOC_REF = re.compile(r"docs/([\w\-./]+?\.md)#([\w\-]+)")
RELATIVE_LINK = re.compile(r"\]\(([\w\-./]*?\.md)?#([\w\-]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
NOT_IN_SLUG = re.compile(r"[^\w\- ]")


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.

    Letters and digits of any script stay (CJK headings keep their characters); hyphens and
    underscores stay; every other punctuation character is removed.
    """
    text = INLINE_LINK.sub(r"\1", heading).strip().lower()
    return NOT_IN_SLUG.sub("", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """All heading anchors of a Markdown text, with GitHub's -1, -2 … for repeated headings."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    in_fence = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match is None:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def project_files() -> Iterator[Path]:
    """Every file of the project, without environments, caches and build output."""
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [
            d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")
        ]
        for name in filenames:
            yield Path(dirpath) / name


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_slug_rule() -> None:
    # Hand-derived anchors, as GitHub renders these headings.
    assert github_slug("Validity of means") == "validity-of-means"
    assert github_slug("Intervals (HJ 212-2017 Table 4, App. C)") == (
        "intervals-hj-212-2017-table-4-app-c"
    )
    assert github_slug("Stopped stacks (停运)") == "stopped-stacks-停运"
    assert github_slug("NOx from NO and NO2") == "nox-from-no-and-no2"
    assert github_slug("`flag` and [CRC](#crc)") == "flag-and-crc"
    assert anchors("# A\n```\n# not a heading\n```\n## A\n## A\n") == {"a", "a-1", "a-2"}


def test_no_reference_to_external_domain_notes() -> None:
    offenders: list[str] = []
    for path in project_files():
        name = rel(path)
        if path == Path(__file__).resolve():
            continue  # this file names them to look for them
        if name == MIGRATION_HISTORY_TEST:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if not any(note in data for note in EXTERNAL_NOTES):
            continue
        for number, line in enumerate(data.splitlines(), start=1):
            if not any(note in line for note in EXTERNAL_NOTES):
                continue
            text = line.decode("utf-8", "replace").strip()
            offenders.append(f"{name}:{number}: {text[:120]}")
    assert not offenders, (
        "these name the external domain notes; cite the standard's clause and the repo's "
        "docs/<page>.md#<anchor> instead:\n" + "\n".join(offenders)
    )


def _doc_references() -> Iterator[tuple[str, str, str]]:
    """(where, page under docs/, anchor) of every anchored reference to a doc page."""
    for path in project_files():
        if path.suffix not in TEXT_SUFFIXES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        name = rel(path)
        for number, line in enumerate(text.splitlines(), start=1):
            for match in DOC_REF.finditer(line):
                yield f"{name}:{number}", match.group(1), match.group(2)
            if path.suffix == ".md" and path.parent == DOCS:
                for match in RELATIVE_LINK.finditer(line):
                    page = match.group(1) or path.name
                    yield f"{name}:{number}", page, match.group(2)


def test_doc_anchors_resolve() -> None:
    cache: dict[str, set[str] | None] = {}
    broken: list[str] = []
    checked = 0
    for where, page, anchor in _doc_references():
        if page not in cache:
            target = DOCS / page
            cache[page] = anchors(target.read_text(encoding="utf-8")) if target.is_file() else None
        found = cache[page]
        checked += 1
        if found is None:
            broken.append(f"{where}: docs/{page} does not exist")
        elif anchor not in found:
            broken.append(f"{where}: docs/{page} has no heading with anchor #{anchor}")
    assert checked > 0, "no docs/<page>.md#<anchor> reference found: the scan is broken"
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize(
    "page", ["hj212.md", "hj75-data.md", "conversions.md", "limits.md", "alarms.md"]
)
def test_reference_pages_are_linked_from_readme(page: str) -> None:
    assert f"docs/{page}" in (ROOT / "README.md").read_text(encoding="utf-8")
