"""The static report: its files, its page in headless Chromium, and serving it."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.factories import api_server, records_dir, saverzoo, saverzoo_json, small_zoo

CHROMIUM = shutil.which("chromium")
ROW = re.compile(r'<tr data-base="([^"]+)">')
# Markup in a name: a script, an attribute break-out with an event handler, and an entity that
# must stay the literal text "&amp;".
MARKUP = '<script>alert(1)</script>"><img src=x onerror=alert(1)>&amp;'
ESCAPED = (
    "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(1)&gt;&amp;amp;"
)
PAGE_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "h1",
    "h2",
    "p",
    "a",
    "code",
    "ul",
    "li",
    "img",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "div",
    "figure",
    "figcaption",
    "script",
    "span",
    "wbr",
}


@pytest.fixture
def val_zoo(use_database, tmp_path):
    """Seven of eight models' records on 'val' (the eighth arrives later in one test)."""
    zoo = small_zoo(num_models=8)
    imported = saverzoo(
        "records", "import", records_dir(tmp_path, zoo, zoo.names[:7]), "--dataset", "val"
    )
    assert imported.exit_code == 0, imported.output
    return zoo


def assert_valid_png(path):
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 100


def test_the_report_writes_the_page_plots_and_timm_style_tables(val_zoo, tmp_path):
    out = tmp_path / "report"
    written = saverzoo("report", "--dataset", "val", "--out", out)
    assert written.exit_code == 0, written.output
    best = saverzoo_json("savers", "best", "--dataset", "val")
    saved = [row for row in best if row["saver"]]
    assert saved, "the synthetic zoo has savers"
    assert_valid_png(out / "zoo.png")
    curves = sorted((out / "curves").glob("*.png"))
    assert len(curves) == len(saved)
    for path in curves:
        assert_valid_png(path)

    savers_rows = list(csv.DictReader(io.StringIO((out / "savers.csv").read_text())))
    assert [r["base"] for r in savers_rows] == [r["base"] for r in best]
    for row, expected in zip(savers_rows, best, strict=True):
        assert row["saver"] == (expected["saver"] or "")
        if expected["saver"]:
            assert float(row["saving_pct"]) == pytest.approx(100 * expected["saving"], abs=5e-4)
            assert float(row["top1"]) == pytest.approx(100 * expected["accuracy"], abs=5e-4)
    models = list(csv.DictReader(io.StringIO((out / "models.csv").read_text())))
    assert list(models[0])[:4] == ["model", "top1", "top1_err", "param_count"]
    for row in models:
        accuracy = saverzoo_json("models", "show", row["model"])["accuracy"]["val"]
        assert float(row["top1"]) == pytest.approx(100 * accuracy, abs=5e-4)
        assert float(row["top1"]) + float(row["top1_err"]) == pytest.approx(100)

    page = (out / "index.html").read_text()
    assert ROW.findall(page) == [r["base"] for r in best]


class PageParts(HTMLParser):
    """A page's elements and the text of its table's cells, as a browser would read them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[str]] = []
        self.headers: list[str] = []
        self._cell: list[str] | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            (self.headers if tag == "th" else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def assert_only_the_pages_own_markup(page: str) -> PageParts:
    parts = PageParts(page)
    assert {tag for tag, _ in parts.tags} <= PAGE_TAGS
    assert [tag for tag, _ in parts.tags].count("script") == 1  # the sorting script
    for tag, attrs in parts.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert tag != "img" or attrs["src"] != "x"
    assert "<script>alert" not in page and "<img src=x" not in page
    return parts


@pytest.mark.filterwarnings("ignore:Tight layout not applied")  # the names are long
def test_the_page_shows_markup_in_model_names_as_text(val_zoo, use_database, tmp_path):
    # The name validators refuse these characters at every edge, so the names are written into
    # the database directly: the page must not depend on that gate.
    from sqlalchemy import select

    from db.models import Model
    from db.session import session_factory

    with session_factory(use_database).begin() as session:
        for model in session.scalars(select(Model)):
            model.name = f"{MARKUP}{model.name}"
    out = tmp_path / "report"

    written = saverzoo("report", "--dataset", "val", "--out", out)

    assert written.exit_code == 0, written.output
    page = (out / "index.html").read_text()
    parts = assert_only_the_pages_own_markup(page)
    names = {f"{MARKUP}{name}" for name in val_zoo.names[:7]}
    assert not any(name in page for name in names)
    assert all(f"{ESCAPED}{name}" in page for name in val_zoo.names[:7])
    base, saver, frontier = (parts.headers.index(h) for h in ("base", "saver", "frontier"))
    body = [row for row in parts.rows if row]  # the header row has no td
    assert {row[base] for row in body} == names
    assert {row[saver] for row in body} - {"none"} <= names
    assert any(row[saver] != "none" for row in body)
    assert {row[frontier] for row in body} <= names
    figures = [attrs for tag, attrs in parts.tags if tag == "figure"]
    assert figures and all(attrs["id"].startswith("curve-_script_alert") for attrs in figures)
    assert (
        next(iter(csv.DictReader(io.StringIO((out / "savers.csv").read_text()))))["base"] in names
    )


def test_the_page_shows_markup_in_dataset_names_and_warnings_as_text():
    from orchestrator.reports.page import render_index

    dataset, other = f"{MARKUP}val", f"{MARKUP}other"
    query = {"criterion": "budget", "max_drop": 0.5, "holdout": False, "score_on": other}
    meta = {
        "dataset": dataset,
        "query": query,
        "generated_at": MARKUP,
        "search_revision": 3,
        "accuracy_warnings": [{"message": f"{MARKUP} is 9 points below timm"}],
    }
    row = {
        "base": f"{MARKUP}b",
        "saver": f"{MARKUP}s",
        "frontier_model": f"{MARKUP}f",
        "frontier_saving": -0.1,
        "accuracy": 0.5,
    }

    page = render_index(meta, [row], [{"name": row["base"], "gmacs": 2.0}], {}, named=1)

    parts = assert_only_the_pages_own_markup(page)
    assert MARKUP not in page
    assert f"<title>saverzoo: best savers on {ESCAPED}val</title>" in page
    assert f"<h1>Best savers on {ESCAPED}val</h1>" in page
    assert f"picked on {ESCAPED}val (the calib. columns) and scored on {ESCAPED}other" in page
    assert f"<li>{ESCAPED} is 9 points below timm</li>" in page
    cells = next(row for row in parts.rows if row)  # as a browser reads them: <wbr> adds no text
    assert {f"{MARKUP}{name}" for name in ("b", "s", "f")} <= set(cells)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_the_report_page_opens_in_headless_chromium(val_zoo, tmp_path):
    out = tmp_path / "report"
    assert saverzoo("report", "--dataset", "val", "--out", out).exit_code == 0
    url = (out / "index.html").as_uri()
    browser = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ]
    shot = tmp_path / "page.png"
    subprocess.run(
        [*browser, "--window-size=1200,1600", f"--screenshot={shot}", url],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert_valid_png(shot)
    dom = subprocess.run(
        [*browser, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    assert sorted(ROW.findall(dom)) == sorted(val_zoo.names[:7])  # every base, once
    assert '<img class="zoo" src="zoo.png"' in dom
    assert '<p class="caption">The plot names every model.</p>' in dom  # seven short names fit


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_shows_the_current_report_and_rebuilds_it_when_models_arrive(val_zoo, tmp_path):
    with api_server(
        tmp_path / "server.log", tmp_path / "reports", SAVERZOO_API_OPEN_READ="1"
    ) as url:
        first = httpx.get(f"{url}/report/val/", timeout=60)
        assert first.status_code == 200 and "text/html" in first.headers["content-type"]
        assert len(ROW.findall(first.text)) == 7
        assert httpx.get(f"{url}/report/val/savers.csv").text.startswith("base,saver,")
        assert "/report/val/" in httpx.get(f"{url}/report/").text
        assert httpx.get(f"{url}/report/val/%2E%2E/%2E%2E/etc/passwd").status_code == 404
        assert httpx.get(f"{url}/report/nope/").status_code == 404

        added = saverzoo(
            "records",
            "import",
            records_dir(tmp_path / "more", val_zoo, val_zoo.names[7:]),
            "--dataset",
            "val",
        )
        assert added.exit_code == 0, added.output
        second = httpx.get(f"{url}/report/val/", timeout=60)
        assert sorted(ROW.findall(second.text)) == sorted(val_zoo.names)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_out_that_is_a_file_or_below_a_file_fails_in_one_line_before_any_work(val_zoo, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("kept")
    for out, message in [
        (a_file, f"--out {a_file} is a file; name a folder"),
        (a_file / "report", f"--out {a_file / 'report'}: cannot write a folder there (Not a "),
    ]:
        result = saverzoo("report", "--dataset", "val", "--out", out)

        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert "database" not in result.stderr
    assert a_file.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_file_error_inside_a_transaction_names_the_file_not_the_database(use_database, tmp_path):
    import typer

    from orchestrator.cli.console import transaction

    missing = tmp_path / "no-such-folder" / "table.csv"
    runner = typer.Typer()

    @runner.command()
    def write() -> None:
        with transaction():
            missing.write_text("x")

    result = CliRunner().invoke(runner, [])

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot use {missing}: No such file or directory"
    ]
