"""The documentation: the generated reference pages match the code, and every relative link and
anchor of the README, the docs, the changelog and the benchmark results resolves."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from orchestrator.reference import COMMAND, PAGES, stale_pages

ROOT = Path(__file__).resolve().parents[1]
PAGES_LINKED = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "bench" / "RESULTS.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
DEMO_MARKERS = ("<!-- demo-output:begin -->", "<!-- demo-output:end -->")

# CommonMark with GitHub's tables: links inside code spans and fences are not links.
MARKDOWN = MarkdownIt("commonmark").enable("table")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading's text: lower case, punctuation but hyphens and
    underscores dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _inline_text(token) -> str:
    return "".join(
        child.content for child in token.children or [] if child.type in ("text", "code_inline")
    )


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, a repeated heading numbered as GitHub numbers it."""
    tokens = MARKDOWN.parse(page.read_text(encoding="utf-8"))
    found: set[str] = set()
    for opening, inline in itertools.pairwise(tokens):
        if opening.type == "heading_open":
            slug = github_slug(_inline_text(inline))
            numbered, n = slug, 0
            while numbered in found:
                n += 1
                numbered = f"{slug}-{n}"
            found.add(numbered)
    return found


def links(page: Path) -> list[str]:
    """The targets of a page's links and images."""
    targets = []
    for token in MARKDOWN.parse(page.read_text(encoding="utf-8")):
        for child in token.children or []:
            if child.type == "link_open":
                targets.append(str(child.attrs["href"]))
            elif child.type == "image":
                targets.append(str(child.attrs["src"]))
    return targets


def broken_links(pages: list[Path]) -> list[str]:
    """Each relative link whose file is missing or whose #anchor is no heading of its target."""
    problems = []
    for page in pages:
        for target in links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: …: not checked here
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name}"
            if not resolved.exists():
                problems.append(f"{where}: {target}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{where}: {target}: no heading with that anchor")
    return problems


# ----- the generated pages ----------------------------------------------------------------------
@pytest.mark.parametrize("page", sorted(PAGES))
def test_generated_reference_page_matches_the_code(page):
    written = (ROOT / page).read_text(encoding="utf-8") if (ROOT / page).exists() else ""
    assert written == PAGES[page](), f"{page} is out of date: run `{COMMAND}`"


def test_reference_pages_do_not_depend_on_the_terminal_or_the_home_directory(tmp_path):
    environment = {
        **os.environ,
        "COLUMNS": "30",
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    check = subprocess.run(
        [sys.executable, "-m", "orchestrator.reference", "--check"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    for page in PAGES:
        assert str(Path.home()) not in (ROOT / page).read_text(encoding="utf-8")


def test_a_missing_or_edited_page_is_stale(tmp_path):
    assert stale_pages(tmp_path) == sorted(PAGES)
    for page, render in PAGES.items():
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text(render(), encoding="utf-8")
    assert stale_pages(tmp_path) == []
    (tmp_path / "docs/cli.md").write_text("# CLI reference\n", encoding="utf-8")
    assert stale_pages(tmp_path) == ["docs/cli.md"]


def test_every_command_and_setting_is_in_the_reference():
    import typer.main
    from typer._click.core import Context

    from cluster.settings import Settings
    from orchestrator.cli import app

    cli = (ROOT / "docs/cli.md").read_text(encoding="utf-8")
    top = typer.main.get_command(app)
    context = Context(top, info_name="saverzoo")
    for name in top.list_commands(context):
        command = top.get_command(context, name)
        assert f"### `saverzoo {name}`" in cli
        inner = Context(command, info_name=name, parent=context)
        for sub in getattr(command, "list_commands", lambda _: [])(inner):
            assert f"#### `saverzoo {name} {sub}`" in cli
    configuration = (ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    for field in Settings.model_fields:
        assert f"`SAVERZOO_{field.upper()}`" in configuration


# ----- links --------------------------------------------------------------------------------------
def test_every_relative_link_and_anchor_resolves():
    assert broken_links(PAGES_LINKED) == []


def test_the_link_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "target.md").write_text(
        "# Target page\n\n## What `make demo` shows\n\n## Notes\n\n## Notes\n", encoding="utf-8"
    )
    (tmp_path / "source.md").write_text(
        "# Source\n\n"
        "[good](target.md#what-make-demo-shows), [second Notes](target.md#notes-1), "
        "[self](#source), [web](https://example.com/missing.md)\n\n"
        "[gone](missing.md), [no anchor](target.md#nowhere), ![picture](pic.png)\n\n"
        "`[in code](missing-too.md)`\n\n```\n[in a fence](missing-three.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links([tmp_path / "source.md"]) == [
        "source.md: missing.md: no such file",
        "source.md: target.md#nowhere: no heading with that anchor",
        "source.md: pic.png: no such file",
    ]


def test_the_readme_marks_where_the_demo_output_goes():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    begin, end = DEMO_MARKERS
    assert readme.count(begin) == readme.count(end) == 1
    assert readme.index(begin) < readme.index(end)
