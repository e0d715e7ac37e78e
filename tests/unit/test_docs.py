"""The documentation: a short README, links that resolve, and citations of sections that exist.

README.md is a user's guide of at most 400 lines whose quick start shows the two
set-up commands; the rest lives in docs/. Every relative Markdown link in
README.md and docs/*.md must name a file of the repository (and, for a link into
a Markdown file, one of its headings), and a file of the repository that cites a
document's section by name must cite one that exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 400

# A document the project once cited but never had; spelled in two parts so
# that this file does not name it.
ABSENT_DOCUMENT = "DESIGN" + ".md"
MAY_NAME_ABSENT = {"docs/changelog.md"}  # history may mention it

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
# A document's name, then the section's name in double quotes: after a comma
# (`docs/contracts.md, ...`, also after a Markdown link's closing parenthesis or
# the word `section`), in parentheses, or after a space (`README ...`).
_CITATION = re.compile(
    r"(?P<doc>\b[\w./-]*\.md|\bREADME)\)?(?:,\s*(?:section\s+)?|\s+\(|\s+)\"(?P<section>[^\"]+)\"")
_TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".service", ".conf", ".cfg", ".txt", ".in"}


def _prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation gone, spaces as '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in _prose_lines(path) if re.match(r"#{1,6}\s", line)]


def _relative_links(path: Path) -> list[str]:
    """Link targets that are neither URLs nor anchors within the same page."""
    targets = []
    for line in _prose_lines(path):
        for target in _LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            targets.append(target)
    return targets


def _tracked_files() -> list[Path]:
    """The files git tracks (or every file of the tree when this is not a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
        return [p for p in ROOT.rglob("*")
                if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    return [ROOT / name for name in listed.decode().split("\0") if name]


def _text_files() -> list[Path]:
    return [p for p in _tracked_files()
            if p.exists() and (p.suffix in _TEXT_SUFFIXES or p.name == "Makefile")]


def _quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match is not None, "README.md has no '## Quick start' section"
    return match.group(1)


def test_there_are_docs() -> None:
    names = {path.name for path in DOCS}
    assert {"contracts.md", "guarantees.md", "architecture.md", "benchmarks.md",
            "changelog.md"} <= names


def test_readme_is_at_most_400_lines() -> None:
    count = len(README.read_text(encoding="utf-8").splitlines())
    assert count <= MAX_README_LINES, f"README.md has {count} lines (at most {MAX_README_LINES})"


def test_quick_start_shows_the_two_setup_commands() -> None:
    quick_start = _quick_start()
    for command in ("make run", "make test"):
        assert re.search(rf"^{command}\b", quick_start, re.MULTILINE), \
            f"the quick start does not show `{command}` on a line of its own"


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_that_exists(page: Path) -> None:
    broken = []
    for target in _relative_links(page):
        name, _, anchor = target.partition("#")
        path = (page.parent / name).resolve()
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in map(_slug, _headings(path)):
            broken.append(f"{target}: no heading with the anchor #{anchor}")
    assert broken == [], f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_no_tracked_file_names_the_absent_document() -> None:
    found = [str(path.relative_to(ROOT)) for path in _tracked_files()
             if path.exists() and str(path.relative_to(ROOT)) not in MAY_NAME_ABSENT
             and ABSENT_DOCUMENT.encode() in path.read_bytes()]
    assert found == [], f"these files cite {ABSENT_DOCUMENT}, which is not in the repository"


def _cited(source: Path, doc: str) -> Path:
    """The file a citation in `source` means: README is the top one; paths are from the
    root, or, inside docs/, from the citing page."""
    if doc == "README":
        return README
    if source.parent.name == "docs" and "/" not in doc and (source.parent / doc).exists():
        return source.parent / doc
    return ROOT / doc


def test_every_cited_section_exists() -> None:
    wrong = []
    for source in _text_files():
        text = source.read_text(encoding="utf-8", errors="replace")
        for match in _CITATION.finditer(text):
            doc, section = match.group("doc"), match.group("section")
            target = _cited(source, doc)
            where = f"{source.relative_to(ROOT)}: {doc}, \"{section}\""
            if not target.exists():
                wrong.append(f"{where}: no such file")
            elif not any(section.lower() in heading.lower() for heading in _headings(target)):
                wrong.append(f"{where}: no such section")
    assert wrong == [], "\n".join(wrong)


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## Wire format v1\n\nSee [a](missing.md), [b](page.md#wire-format-v1),"
                    " [c](https://example.org) and `[d](code.md)`.\n\n```\n[e](fenced.md)\n```\n"
                    "docs/contracts.md, \"Reading identity\" and README, \"Run as a service\"\n",
                    encoding="utf-8")
    assert _relative_links(page) == ["missing.md", "page.md#wire-format-v1"]
    assert _headings(page) == ["Top", "Wire format v1"]
    assert _slug("Chaos run: `bench/chaos/`") == "chaos-run-benchchaos"
    cited = [(m.group("doc"), m.group("section")) for m in _CITATION.finditer(page.read_text())]
    assert cited == [("docs/contracts.md", "Reading identity"), ("README", "Run as a service")]
