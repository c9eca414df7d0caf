"""Which models the answers speak of: complete ones only, never superseded ones, and a model
without complete predictions is "not found" (404, or exit 1 in one line) wherever it is named."""

from __future__ import annotations

import csv
import io

import pytest

from db.queries import get_model
from db.session import session_factory
from orchestrator import answer_types
from orchestrator.answers import FIELDS
from orchestrator.sweeps.watch import supersede
from search.criteria import CRITERIA
from search.views import CHAIN_FIELDS, fields_for
from tests.factories import api_client, records_dir, saverzoo, saverzoo_json, small_zoo


@pytest.fixture
def val_zoo(use_database, tmp_path):
    """Seven of eight models' records on 'val'; all eight on 'extra' (zoo007 is only there)."""
    zoo = small_zoo(num_models=8)
    for dataset, names in (("val", zoo.names[:7]), ("extra", zoo.names)):
        folder = records_dir(tmp_path / dataset, zoo, names)
        imported = saverzoo("records", "import", folder, "--dataset", dataset)
        assert imported.exit_code == 0, imported.output
    return zoo


def everything_said_about_val(tmp_path) -> str:
    """Every answer about 'val' (CLI JSON for each criterion, the report's files) as one text."""
    said = [
        saverzoo_json("datasets", "list"),
        saverzoo_json("models", "list", "--dataset", "val"),
        saverzoo_json("savers", "best", "--dataset", "val"),
        saverzoo_json("savers", "best", "--dataset", "val", "--criterion", "paper"),
        saverzoo_json("savers", "best", "--dataset", "val", "--holdout"),
        saverzoo_json("savers", "show", "zoo006", "--dataset", "val", "--alternatives", "100"),
    ]
    out = tmp_path / "report"
    written = saverzoo("report", "--dataset", "val", "--out", out)
    assert written.exit_code == 0, written.output
    files = [(out / name).read_text() for name in ("savers.csv", "models.csv", "index.html")]
    return "\n".join([*map(str, said), *files])


def test_a_superseded_model_is_excluded_from_every_answer(val_zoo, use_database, tmp_path):
    rows = saverzoo_json("savers", "best", "--dataset", "val")
    best = {row["base"]: row["saver"] for row in rows}
    stale = best["zoo006"]
    assert stale is not None and stale in everything_said_about_val(tmp_path)

    with session_factory(use_database).begin() as session:
        (renamed,) = supersede(session, [get_model(session, stale)])

    said = everything_said_about_val(tmp_path)
    assert stale not in said and renamed not in said
    (val,) = [d for d in saverzoo_json("datasets", "list") if d["name"] == "val"]
    assert val["num_models"] == 6
    assert "val" not in saverzoo_json("models", "show", renamed)["accuracy"]
    for args in (["savers", "best", renamed], ["savers", "show", renamed]):
        result = saverzoo(*args, "--dataset", "val")
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"model {renamed!r} was superseded" in lines[0], result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["savers", "best", "zoo007", "--dataset", "val"],
        ["savers", "best", "zoo007", "--dataset", "val", "--criterion", "paper"],
        ["savers", "show", "zoo007", "--dataset", "val"],
        ["savers", "curve", "zoo007", "zoo000", "--dataset", "val"],
    ],
)
def test_a_model_without_complete_predictions_fails_in_one_line(val_zoo, args):
    result = saverzoo(*args)

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model 'zoo007' has no complete predictions on 'val'" in lines[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_model_without_complete_predictions_is_404_in_the_api(val_zoo, use_database):
    with api_client(use_database) as client:
        for path in ("/v1/savers/zoo007?dataset=val", "/v1/pairs/zoo007/zoo000/curve?dataset=val"):
            response = client.get(path)
            assert response.status_code == 404, (path, response.text)
            assert response.json() == {
                "error": "model 'zoo007' has no complete predictions on 'val'"
            }
        curve = client.get("/v1/pairs/zoo007/zoo000/curve?dataset=extra")
        assert curve.status_code == 200
        assert (curve.json()["base"], curve.json()["dataset"]) == ("zoo007", "extra")


ROW_TYPES = {
    answer_types.BudgetRow: fields_for("budget", False),
    answer_types.PaperRow: fields_for("paper", False),
    answer_types.HoldoutRow: fields_for("budget", True),
    answer_types.TransferRow: fields_for("budget", False, transfer=True),
}


def test_each_row_type_reports_its_fields_in_order_after_base_and_saver():
    for row_type, fields in ROW_TYPES.items():
        assert tuple(row_type.model_fields) == ("base", "saver", *fields), row_type
    assert tuple(answer_types.ChainRow.model_fields) == ("base", *CHAIN_FIELDS)
    for ranked in (answer_types.BudgetSaver, answer_types.PaperSaver, answer_types.HoldoutSaver):
        assert tuple(ranked.model_fields)[:2] == ("saver", "saver_gmacs")


def test_every_reported_field_has_one_label_and_unit():
    reported = {f for c in CRITERIA for h in (False, True) for f in fields_for(c, h)}
    reported |= set(fields_for("budget", False, transfer=True))
    for field in sorted(reported):
        assert FIELDS[field].label, field
    assert len({FIELDS[f].label for f in reported}) == len(reported)  # one label each
    assert [FIELDS[f].csv for f in ("threshold", "exit_ratio", "accuracy", "saving")] == [
        "threshold",
        "exit_pct",
        "top1",
        "saving_pct",
    ]


def test_the_report_csv_keeps_its_timm_style_columns(val_zoo, tmp_path):
    out = tmp_path / "report"
    assert saverzoo("report", "--dataset", "val", "--out", out).exit_code == 0
    header = next(csv.reader(io.StringIO((out / "savers.csv").read_text())))
    assert header == [
        "base",
        "saver",
        "threshold",
        "exit_pct",
        "top1",
        "base_top1",
        "top1_drop",
        "relative_cost",
        "saving_pct",
        "frontier_model",
        "frontier_saving_pct",
        "base_gmacs",
        "saver_gmacs",
    ]


def test_a_threshold_below_every_confidence_reads_as_below_zero_and_stays_a_number_in_csv():
    from orchestrator.answers import field_text
    from orchestrator.reports.page import _csv_cell

    every_sample_exits = -1.401298464324817e-45  # the float32 just below 0
    assert field_text("threshold", every_sample_exits) == "<0"
    assert field_text("threshold", 0.1765) == "0.1765"
    assert float(_csv_cell("threshold", every_sample_exits)) == pytest.approx(every_sample_exits)
