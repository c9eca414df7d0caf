"""Is this model's accuracy even right? On ImageNet-1k validation, a top-1 more than 0.3 points
from timm's published figure is flagged in `models show`, `sweep status` and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from db.models import Model
from db.queries import get_dataset
from db.session import session_factory
from orchestrator.answers import accuracy_checks
from orchestrator.published import accuracy_check, published_for, published_table
from search.synthetic import SyntheticZoo
from tests.factories import image_folder, records_dir, saverzoo, saverzoo_json

# Tags timm publishes at one image size only (records carry no input size).
RIGHT, WRONG = "mobilenetv3_small_050.lamb_in1k", "tf_efficientnet_b6.aa_in1k"


def test_the_shipped_table_is_timms_results_for_every_pretrained_tag():
    table = published_table()
    assert len(table) == 1266
    assert sum(len(rows) for rows in table.values()) == 1556
    assert published_for("resnet50.a1_in1k", 224).top1 == 80.382  # two sizes published
    assert published_for("resnet50.a1_in1k", 288).top1 == 81.24
    assert published_for("resnet50.a1_in1k", None) is None  # which of the two: unknown
    assert published_for("resnet50.a1_in1k", 160) is None
    assert published_for(RIGHT, None).top1 == 57.918


def test_a_top1_more_than_three_tenths_of_a_point_away_is_flagged():
    assert accuracy_check(RIGHT, 224, 0.57918 + 0.0029) is None
    flagged = accuracy_check(RIGHT, 224, 0.57918 - 0.0031)
    assert flagged["difference_points"] == pytest.approx(-0.31)
    assert "check the labels' class order and the preprocessing" in flagged["message"]
    assert accuracy_check("my_own_model", None, 0.1) is None  # nothing published: no check


def zoo_with_accuracies(accuracies: dict[str, float], samples: int = 1000) -> SyntheticZoo:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, samples)
    rows = []
    for accuracy in accuracies.values():
        right = np.zeros(samples, dtype=bool)
        right[rng.permutation(samples)[: round(accuracy * samples)]] = True
        rows.append(np.where(right, labels, (labels + 1) % 10))
    confidence = rng.random((len(accuracies), samples)).astype(np.float32)
    return SyntheticZoo(
        list(accuracies), np.array([0.03, 19.0]), labels, np.array(rows), confidence
    )


@pytest.fixture
def flagged_dataset(use_database, tmp_path):
    zoo = zoo_with_accuracies({RIGHT: 0.579, WRONG: 0.712})  # timm: 57.918, 84.124
    directory = records_dir(tmp_path, zoo)
    result = saverzoo("records", "import", directory, "--dataset", "val", "--imagenet-val")
    assert result.exit_code == 0, result.output
    assert saverzoo("records", "import", directory, "--dataset", "other").exit_code == 0
    return use_database


def test_models_show_warns_where_the_measured_top1_is_far_from_the_published(flagged_dataset):
    shown = saverzoo("models", "show", WRONG)
    assert "timm's published ImageNet-1k top-1: 84.12%" in shown.stdout
    assert "warning: on val" in shown.stderr and "-12.92 points" in shown.stderr
    assert "other" not in shown.stderr  # a dataset not marked as ImageNet-val is not checked
    detail = saverzoo_json("models", "show", WRONG)
    assert [w["dataset"] for w in detail["accuracy_warnings"]] == ["val"]
    assert saverzoo_json("models", "show", RIGHT)["accuracy_warnings"] == []
    assert [d["imagenet_val"] for d in saverzoo_json("datasets", "list")] == [False, True]


def test_the_report_lists_the_flagged_models(flagged_dataset, tmp_path):
    out = tmp_path / "report"
    assert saverzoo("report", "--dataset", "val", "--out", out).exit_code == 0
    meta = json.loads(next(out.glob("*.json")).read_text())
    assert [w["model"] for w in meta["accuracy_warnings"]] == [WRONG]
    assert "Accuracy far from timm" in (out / "index.html").read_text()
    other = tmp_path / "other"
    assert saverzoo("report", "--dataset", "other", "--out", other).exit_code == 0
    assert "Accuracy far from timm" not in (other / "index.html").read_text()


def test_sweep_status_and_random_weights(flagged_dataset):
    """`sweep status` reports accuracy_checks for its models; random weights are never checked."""
    with session_factory(flagged_dataset).begin() as session:
        dataset = get_dataset(session, "val")
        assert [c["model"] for c in accuracy_checks(session, dataset)] == [WRONG]
        session.query(Model).filter(Model.name == WRONG).one().random_weights = True
        assert accuracy_checks(session, dataset) == []


def test_datasets_made_or_added_as_imagenet_val_are_marked(use_database, tmp_path):
    image_folder(tmp_path / "src")
    made = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        tmp_path / "shards",
        "--name",
        "inval",
        "--imagenet-val",
    )
    assert made.exit_code == 0, made.output
    assert saverzoo_json("datasets", "show", "inval")["imagenet_val"] is True
