"""Does the threshold hold on other data? `savers best --dataset A --score-on B`: each base's saver
and threshold picked on A, scored on B, beside A's figures; checked against a brute force."""

from __future__ import annotations

import numpy as np
import pytest

from search.frontier import SingleModel
from search.synthetic import SyntheticZoo
from tests.factories import records_dir, saverzoo, saverzoo_json
from tests.orchestrator.test_report import PageParts
from tests.search.test_frontier import brute_force_frontier, shuffled_zoo


def redrawn(zoo: SyntheticZoo, seed: int, samples: int) -> SyntheticZoo:
    """The same models (names, costs) on other samples: other data, other confidences."""
    other = shuffled_zoo(len(zoo.names), samples, seed)
    return SyntheticZoo(zoo.names, zoo.gmacs, other.labels, other.predictions, other.confidence)


def imported(tmp_path, zoo, dataset, names=None):
    result = saverzoo(
        "records", "import", records_dir(tmp_path / dataset, zoo, names), "--dataset", dataset
    )
    assert result.exit_code == 0, result.output


CRITERIA = [["--max-drop", "0"], ["--max-drop", "1"], ["--criterion", "paper"]]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("options", CRITERIA, ids=["0", "1", "paper"])
def test_savers_picked_on_one_dataset_are_scored_on_the_other(
    use_database, tmp_path, seed, options
):
    a = shuffled_zoo(8, 300, seed)
    b = redrawn(a, seed + 100, 250)
    imported(tmp_path, a, "a")
    imported(tmp_path, b, "b")
    picked = {r["base"]: r for r in saverzoo_json("savers", "best", "--dataset", "a", *options)}
    index = {name: i for i, name in enumerate(a.names)}
    right_b = b.predictions == b.labels[None, :]

    rows = saverzoo_json("savers", "best", "--dataset", "a", "--score-on", "b", *options)

    assert [r["base"] for r in rows] == list(picked)
    for row in rows:
        base, on_a = index[row["base"]], picked[row["base"]]
        assert row["saver"] == on_a["saver"]
        if row["saver"] is None:
            correct, cost = int(right_b[base].sum()), b.gmacs[base]
        else:
            saver = index[row["saver"]]
            assert row["threshold"] == on_a["threshold"]
            exits = b.confidence[saver].astype(np.float64) > row["threshold"]
            correct = int(np.where(exits, right_b[saver], right_b[base]).sum())
            relative_cost = b.gmacs[saver] / b.gmacs[base] + 1 - exits.mean()
            cost = relative_cost * b.gmacs[base]
            assert row["exit_ratio"] == pytest.approx(exits.mean())
            assert row["accuracy"] == pytest.approx(correct / len(b.labels))
            assert row["base_accuracy"] == pytest.approx(right_b[base].mean())
            assert row["relative_cost"] == pytest.approx(relative_cost)
            assert row["saving"] == pytest.approx(1 - relative_cost)
            saving_on_a = on_a["saving"] if "saving" in on_a else -on_a["delta_c"]
            assert row["in_sample_saving"] == pytest.approx(saving_on_a)
        singles = [
            SingleModel(n, float(b.gmacs[i]), int(right_b[i].sum())) for n, i in index.items()
        ]
        model, saving = brute_force_frontier(singles, row["base"], cost, correct)
        assert (row["frontier_model"], row["frontier_saving"]) == (model, pytest.approx(saving))


def test_bases_not_evaluated_on_the_other_dataset_are_left_out_and_named(use_database, tmp_path):
    a = shuffled_zoo(8, 300, 0)
    imported(tmp_path, a, "a")
    imported(tmp_path, redrawn(a, 5, 200), "b", names=a.names[:-1])  # the dearest is missing
    rows = saverzoo_json("savers", "best", "--dataset", "a", "--score-on", "b")
    assert a.names[-1] not in {r["base"] for r in rows}
    listed = saverzoo("savers", "best", "--dataset", "a", "--score-on", "b")
    assert "left out" in listed.stderr.replace("\n", " ")  # a note: stderr when piped

    one = saverzoo("savers", "best", a.names[-1], "--dataset", "a", "--score-on", "b")
    assert one.exit_code == 1
    assert f"model {a.names[-1]!r} has no complete predictions on 'b'" in one.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--score-on", "nowhere"], "unknown dataset 'nowhere'"),
        (["--score-on", "a"], "is the dataset itself"),
        (["--score-on", "b", "--holdout"], "drop --holdout"),
    ],
)
def test_scoring_on_what_cannot_be_scored_is_a_one_line_error(
    use_database, tmp_path, options, message
):
    a = shuffled_zoo(5, 200, 0)
    imported(tmp_path, a, "a")
    imported(tmp_path, redrawn(a, 1, 100), "b")
    result = saverzoo("savers", "best", "--dataset", "a", *options)
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_report_scores_its_table_on_the_other_dataset(use_database, tmp_path):
    a = shuffled_zoo(6, 300, 0)
    imported(tmp_path, a, "a")
    imported(tmp_path, redrawn(a, 1, 200), "b")
    out = tmp_path / "report"
    assert saverzoo("report", "--dataset", "a", "--score-on", "b", "--out", out).exit_code == 0
    page = (out / "index.html").read_text()
    assert "scored on b" in page and "calib. top-1 %" in PageParts(page).headers
