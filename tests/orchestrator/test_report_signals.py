"""The report beside each kept confidence signal: where a dataset keeps pairs on more than one
signal (max, margin, learned), each base's row shows every kept signal's best saving under the
report's own criterion, budget and selection, equal to what `savers best --confidence` answers."""

from __future__ import annotations

import csv
import io
from html.parser import HTMLParser

import pytest

from orchestrator.reports.page import render_index
from tests.factories import saverzoo, saverzoo_json
from tests.orchestrator.test_report import ESCAPED, MARKUP, assert_only_the_pages_own_markup
from tests.search.test_learned import topk_records


class Table(HTMLParser):
    """The best-saver table as a browser reads it: headers, and each row's cells with their
    text, sort value and title; and the page's paragraph on the signals."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: dict[str, list[dict]] = {}
        self.signals_note = ""
        self._cell: dict | None = None
        self._in_note = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-base" in attrs:
            self._row = self.rows.setdefault(attrs["data-base"], [])
        elif tag in ("td", "th"):
            self._cell = {"tag": tag, "text": "", **attrs}
        elif tag == "p" and attrs.get("id") == "signals":
            self._in_note = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            cell, self._cell = self._cell, None
            if tag == "th":
                self.headers.append(cell["text"])
            else:
                self._row.append(cell)
        elif tag == "p":
            self._in_note = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_note:
            self.signals_note += data


def report(tmp_path, *options: str) -> tuple[Table, list[dict]]:
    out = tmp_path / "report"
    written = saverzoo("report", "--dataset", "val", "--out", out, *options)
    assert written.exit_code == 0, written.output
    page = Table((out / "index.html").read_text())
    return page, list(csv.DictReader(io.StringIO((out / "savers.csv").read_text())))


@pytest.fixture
def top3_zoo(use_database, tmp_path):
    """Five models with their top-3 outputs on 'val', kept on max and margin, and on 'other'."""
    for dataset, seed in (("val", 0), ("other", 1)):
        directory, _, _ = topk_records(tmp_path / dataset, seed=seed)
        imported = saverzoo("records", "import", directory, "--dataset", dataset)
        assert imported.exit_code == 0, imported.output
    saverzoo_json("savers", "best", "--dataset", "val", "--confidence", "margin")  # now kept


def assert_threshold(text: str, threshold: float, rel: float) -> None:
    if text == "<0":  # below every confidence: every sample exits
        assert threshold < 0
    else:
        assert float(text) == pytest.approx(threshold, rel=rel)


@pytest.mark.parametrize(
    ("options", "measure"),
    [
        ([], "saving"),
        (["--max-drop", "1"], "saving"),
        (["--holdout"], "saving"),
        (["--criterion", "paper"], "delta_c"),  # the paper's measure: ΔC = -saving
        (["--score-on", "other"], "saving"),
        (["--criterion", "paper", "--holdout"], "saving"),  # held out, paper reports a saving
    ],
)
def test_each_kept_signal_shows_the_saving_its_best_saver_answers(
    top3_zoo, tmp_path, options, measure
):
    saverzoo_json("savers", "best", "--dataset", "val", "--confidence", "learned")  # now kept
    label = {"saving": "saving %", "delta_c": "ΔC"}[measure]

    page, savers_csv = report(tmp_path, *options)

    main = saverzoo_json("savers", "best", "--dataset", "val", *options)
    assert list(page.rows) == [row["base"] for row in main]
    assert "keeps pairs on 3 confidence signals: max, margin, learned" in page.signals_note
    assert "Ask for" not in page.signals_note  # every signal is kept
    at = page.headers.index(f"max {label}")  # the table's own, now naming its signal
    signal_columns = page.headers[at : at + 3]
    assert signal_columns == [f"max {label}", f"margin {label}", f"learned {label}"]
    assert label not in page.headers
    differs = 0
    for signal, column in zip(("max", "margin", "learned"), signal_columns, strict=True):
        answer = saverzoo_json(
            "savers", "best", "--dataset", "val", "--confidence", signal, *options
        )
        at = page.headers.index(column)
        for row in answer:
            cell = page.rows[row["base"]][at]
            if row["saver"] is None:
                assert cell["text"] == "" and "data-value" not in cell, (signal, row)
                continue
            assert float(cell["data-value"]) == row[measure], (signal, row)
            if signal == "max":  # the table's own saver and threshold are its columns
                continue
            assert cell["title"].startswith(f"saver {row['saver']}, threshold ")
            assert_threshold(cell["title"].rsplit(" ", 1)[1], row["threshold"], rel=1e-3)
        differs += any(
            a["saver"] != b["saver"] or a[measure] != b[measure]
            for a, b in zip(answer, main, strict=True)
        )
        if signal == "max":
            continue
        by_base = {row["base"]: row for row in answer}
        for line in savers_csv:
            row = by_base[line["base"]]
            assert line[f"{signal}_saver"] == (row["saver"] or "")
            if row["saver"] is not None:
                saving = float(line[f"{signal}_saving_pct"])
                expected = -row["delta_c"] if measure == "delta_c" else row["saving"]
                assert saving == pytest.approx(100 * expected, abs=5e-4)
                assert_threshold(line[f"{signal}_threshold"], row["threshold"], rel=1e-5)
    assert differs > 0  # the signals answer differently on this zoo: the columns are not copies
    # The table's other columns stay those of max.
    threshold, saver = page.headers.index("threshold"), page.headers.index("saver")
    for row in main:
        cells = page.rows[row["base"]]
        assert cells[saver]["text"] == (row["saver"] or "none")
        if row["saver"] is not None:
            assert float(cells[threshold]["data-value"]) == row["threshold"]


def test_two_kept_signals_are_compared_and_the_page_says_how_to_keep_the_third(top3_zoo, tmp_path):
    page, savers_csv = report(tmp_path)

    at = page.headers.index("max saving %")
    assert page.headers[at + 1] == "margin saving %"
    note = " ".join(page.signals_note.split())
    assert "keeps pairs on 2 confidence signals: max, margin" in note
    assert "best saving % on margin under the same criterion" in note
    assert "saverzoo savers best --dataset val --confidence learned" in note
    assert list(savers_csv[0])[-3:] == ["margin_saver", "margin_threshold", "margin_saving_pct"]


def test_a_dataset_keeping_one_signal_shows_no_comparison(use_database, tmp_path):
    directory, _, _ = topk_records(tmp_path / "records", seed=0)
    assert saverzoo("records", "import", directory, "--dataset", "val").exit_code == 0

    page, savers_csv = report(tmp_path)

    assert page.signals_note == ""
    assert not any("margin" in h or "learned" in h or h.startswith("max ") for h in page.headers)
    assert page.headers[-1] == "vs frontier %"
    assert list(savers_csv[0])[-1] == "saver_gmacs"
    widths = {len(cells) for cells in page.rows.values()}
    assert widths == {len(page.headers)}


def test_the_signal_columns_show_markup_in_names_as_text():
    dataset, base, saver = (f"{MARKUP}{name}" for name in ("val", "b", "s"))
    meta = {
        "dataset": dataset,
        "query": {"criterion": "budget", "max_drop": 0.0, "holdout": False},
        "generated_at": "2026-12-06T12:00:00+00:00",
        "search_revision": 1,
    }
    rows = [{"base": base, "saver": saver, "threshold": 0.5, "saving": 0.25}]
    margin = [{"base": base, "saver": saver, "threshold": 0.1, "saving": 0.3}]

    page = render_index(meta, rows, [{"name": base, "gmacs": 2.0}], {}, 1, {"margin": margin})

    assert_only_the_pages_own_markup(page)
    assert MARKUP not in page
    assert f'title="saver {ESCAPED}s, threshold 0.1"' in page
    assert f"<code>saverzoo savers best --dataset {ESCAPED}val --confidence learned</code>" in page
