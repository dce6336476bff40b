"""Every documentation link in the repository resolves.

- Relative links and images in the markdown files (README.md, CHANGELOG.md, docs/*.md,
  benchmarks/README.md) point to files that exist; a ``#anchor`` (alone, or after a markdown
  file) names a heading of the target under GitHub's slug rules, or an explicit ``<a id=...>``.
- References of the form ``docs/<name>.md#<anchor>`` in the code and the presets (``*.py``,
  ``*.yaml``) resolve the same way, so a docstring that cites the maths points at a section that
  exists.
- Nothing points to the maths file the project had outside the repository.

GitHub's slug of a heading: the rendered text (inline code, link text; markup removed), lower
case, every character that is not a letter, digit, mark, ``_``, ``-`` or space removed, spaces
replaced by ``-``; a repeated slug gets ``-1``, ``-2``, ... Only ATX headings (``# ...``) are
read: the repository's markdown uses no other kind.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN_FILES = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md"]
    + list((ROOT / "docs").glob("*.md"))
)
CODE_DIRECTORIES = ("agents", "bpl_envs", "tests", "examples", "benchmarks")
CODE_SUFFIXES = (".py", ".yaml")

FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:id|name)\s*=\s*\"([^\"]+)\"")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
CODE_REFERENCE = re.compile(r"\b(docs/[\w\-/]+\.md)(?:#([\w\-]+))?")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.\-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading with this markdown text."""
    text = re.sub(r"<[^>]+>", "", heading)  # inline HTML
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = text.replace("`", "").replace("*", "")
    kept = []
    for char in text.lower():
        category = unicodedata.category(char)
        if char in " -_" or category[0] in "LNM":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, in_fence = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append((number, line))
    return lines


def anchors(text: str) -> set[str]:
    """Every anchor a markdown text defines: heading slugs (deduplicated as GitHub does) and
    explicit ``<a id="...">`` / ``<a name="...">``."""
    found, counts = set(), {}
    for _, line in _prose_lines(text):
        found.update(EXPLICIT_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            counts[slug] = counts.get(slug, -1) + 1
            found.add(slug if counts[slug] == 0 else f"{slug}-{counts[slug]}")
    return found


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition outside code."""
    found = []
    for number, line in _prose_lines(text):
        prose = INLINE_CODE.sub("", line)
        found += [(number, target) for target in INLINE_LINK.findall(prose)]
        definition = REFERENCE_DEFINITION.match(prose)
        if definition:
            found.append((number, definition.group(1)))
    return found


def link_error(source: Path, target: str) -> str | None:
    """Why ``target``, linked from the file ``source``, does not resolve (None if it does)."""
    if not target or EXTERNAL.match(target):
        return None
    path, _, anchor = target.partition("#")
    destination = (source.parent / path).resolve() if path else source
    if not destination.exists():
        return f"{target!r}: no file {destination}"
    if anchor and destination.suffix == ".md":
        if anchor not in anchors(destination.read_text(encoding="utf-8")):
            return f"{target!r}: {destination.name} has no heading with the anchor #{anchor}"
    return None


def broken_links(source: Path) -> list[str]:
    text = source.read_text(encoding="utf-8")
    return [
        f"{source.relative_to(ROOT)}:{number}: {error}"
        for number, target in links(text)
        if (error := link_error(source, target)) is not None
    ]


def broken_references(path: Path, text: str) -> list[str]:
    """``docs/<name>.md#<anchor>`` references in code or a preset that do not resolve (paths are
    relative to the repository root)."""
    errors = []
    for number, line in enumerate(text.splitlines(), start=1):
        for document, anchor in CODE_REFERENCE.findall(line):
            target = document + (f"#{anchor}" if anchor else "")
            error = link_error(ROOT / "README.md", target)  # a file at the root: root-relative
            if error is not None:
                errors.append(f"{path}:{number}: {error}")
    return errors


def code_files() -> list[Path]:
    return sorted(
        path
        for directory in CODE_DIRECTORIES
        for path in (ROOT / directory).rglob("*")
        if path.suffix in CODE_SUFFIXES and "__pycache__" not in path.parts
    )


# ----------------------------------------------------------------------------- the checker


@pytest.mark.parametrize(
    "heading, slug",
    [  # anchors as GitHub renders them
        ("BP(λ) in one screen", "bpλ-in-one-screen"),
        ("`bpl/CopyRepeat-v0`", "bplcopyrepeat-v0"),
        (
            "Two torch threads (the default), a quiet moment (load average 0.1-1.6)",
            "two-torch-threads-the-default-a-quiet-moment-load-average-01-16",
        ),
        ("[Unreleased]", "unreleased"),
        (
            "Differences from the reference implementation",
            "differences-from-the-reference-implementation",
        ),
        ("Toy task: line draw", "toy-task-line-draw"),
        ("Add a `SequenceSource`, then *register* it", "add-a-sequencesource-then-register-it"),
        ("snake_case stays", "snake_case-stays"),
    ],
)
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def test_repeated_headings_are_numbered_and_code_blocks_are_skipped():
    text = "# Notes\n## Notes\n```\n# not a heading\n[x](missing.md)\n```\n### Notes\n"
    assert anchors(text) == {"notes", "notes-1", "notes-2"}
    assert links(text) == []


def test_broken_links_and_anchors_are_reported(tmp_path):
    (tmp_path / "target.md").write_text("# A section\n", encoding="utf-8")
    source = tmp_path / "source.md"
    source.write_text(
        "[ok](target.md#a-section) [ok](#here) ![ok](target.md) [web](https://example.org/x)\n"
        "# Here\n"
        "[no file](gone.md) [no anchor](target.md#b-section) [no local anchor](#there)\n"
        "`[code](ignored.md)`\n"
        "[ref]: also-gone.md\n",
        encoding="utf-8",
    )
    errors = [link_error(source, target) for _, target in links(source.read_text())]
    assert [error is None for error in errors] == [True] * 4 + [False] * 4
    assert "no file" in errors[4] and "#b-section" in errors[5] and "#there" in errors[6]


def test_code_references_with_a_missing_anchor_are_reported():
    text = "see docs/" + "algorithm.md#no-such-section and docs/" + "missing.md"
    errors = broken_references(Path("example.py"), text)
    assert len(errors) == 2
    assert "#no-such-section" in errors[0] and "no file" in errors[1]


# ----------------------------------------------------------------------------- the repository


def test_the_markdown_files_are_found():
    names = {path.relative_to(ROOT).as_posix() for path in MARKDOWN_FILES}
    assert {"README.md", "CHANGELOG.md", "docs/algorithm.md", "docs/architecture.md"} <= names


@pytest.mark.parametrize(
    "source", MARKDOWN_FILES, ids=[path.relative_to(ROOT).as_posix() for path in MARKDOWN_FILES]
)
def test_markdown_links_resolve(source):
    assert broken_links(source) == []


def test_code_and_preset_references_to_the_docs_resolve():
    files = code_files()
    errors, cited = [], 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        cited += len(CODE_REFERENCE.findall(text))
        errors += broken_references(path.relative_to(ROOT), text)
    assert errors == []
    assert cited >= 20  # the docstrings and presets do cite the maths


def test_nothing_points_to_the_maths_file_outside_the_repository():
    outside = "ALGORITHM" + ".md"
    files = [*MARKDOWN_FILES, *code_files(), ROOT / "pyproject.toml", ROOT / "Makefile"]
    mentions = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if outside in line
    ]
    assert mentions == []
