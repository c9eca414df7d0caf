"""`saverzoo records import` then `saverzoo savers best`: the whole query path through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search.engine import budget_point, paper_point, scan_saver
from search.selection import Candidate, best_candidate
from tests.factories import (
    database_checksum,
    engine_zoo,
    records_dir,
    row_counts,
    saverzoo,
    saverzoo_json,
    small_zoo,
)

BUDGET_KEYS = {
    "base",
    "saver",
    "threshold",
    "exit_ratio",
    "accuracy",
    "base_accuracy",
    "relative_cost",
    "saving",
    "frontier_model",
    "frontier_saving",
}


def expected_best(zoo, max_drop=0.0, criterion="budget"):
    """Best saver of every base straight from the engine, as the CLI should report it."""
    ez = engine_zoo(zoo)
    result = {}
    for base in range(len(ez.names)):
        candidates = []
        for saver in np.flatnonzero(ez.costs < ez.costs[base]):
            scan = scan_saver(ez, int(saver), [base], [max_drop])
            point = (
                budget_point(ez, scan, 0, 0) if criterion == "budget" else paper_point(ez, scan, 0)
            )
            candidates.append(Candidate(ez.names[saver], float(ez.costs[saver]), point))
        best = best_candidate(candidates, criterion)
        result[ez.names[base]] = best
    return result


def test_import_then_best_savers_match_the_engine(use_database, tmp_path):
    zoo = small_zoo()
    imported = saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")
    assert imported.exit_code == 0, imported.output

    rows = saverzoo_json("savers", "best", "--dataset", "val")

    expected = expected_best(zoo)
    assert [r["base"] for r in rows] == zoo.names  # one object per base, cheapest first
    for row in rows:
        assert set(row) == BUDGET_KEYS
        best = expected[row["base"]]
        if best is None:
            assert row["saver"] is None and row["saving"] is None
            continue
        assert row["saver"] == best.saver
        assert row["saving"] == pytest.approx(best.point.saving)
        assert row["accuracy"] >= row["base_accuracy"]  # default budget: no accuracy loss
        exits = (zoo.confidence[zoo.names.index(best.saver)] > row["threshold"]).sum()
        assert exits == round(row["exit_ratio"] * len(zoo.labels))  # threshold reproduces exits
    assert any(r["saver"] for r in rows)


def test_budget_and_paper_criteria_through_the_cli(use_database, tmp_path):
    zoo = small_zoo()
    saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")

    loose = saverzoo_json("savers", "best", "--dataset", "val", "--max-drop", "2")
    paper = saverzoo_json("savers", "best", "--dataset", "val", "--criterion", "paper")

    expected_loose = expected_best(zoo, 2.0)
    expected_paper = expected_best(zoo, criterion="paper")
    for row in loose:
        best = expected_loose[row["base"]]
        assert row["saver"] == (best.saver if best else None)
        if best:
            assert row["accuracy"] >= row["base_accuracy"] - 0.02 - 1e-12
    for row in paper:
        assert set(row) == {
            "base",
            "saver",
            "threshold",
            "exit_ratio",
            "delta_c",
            "frontier_model",
            "frontier_saving",
        }
        best = expected_paper[row["base"]]
        assert row["saver"] == (best.saver if best else None)
        if best:
            assert row["delta_c"] == pytest.approx(best.point.delta_c)


def test_a_new_budget_is_computed_on_first_request_and_then_stored(use_database, tmp_path):
    zoo = small_zoo()
    saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")
    pairs_before = row_counts(use_database)["pair_results"]

    rows = saverzoo_json("savers", "best", "--dataset", "val", "--max-drop", "0.25")

    expected = expected_best(zoo, 0.25)
    assert [r["saver"] for r in rows] == [
        expected[r["base"]].saver if expected[r["base"]] else None for r in rows
    ]
    assert row_counts(use_database)["pair_results"] > pairs_before


def test_holdout_reports_held_out_numbers_beside_in_sample_ones(use_database, tmp_path):
    zoo = small_zoo(num_samples=1000)
    saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")

    rows = saverzoo_json("savers", "best", "--dataset", "val", "--holdout")

    with_saver = [r for r in rows if r["saver"]]
    assert with_saver
    for row in with_saver:
        assert row["in_sample_saving"] > 0  # chosen on the calibration half
        assert row["in_sample_accuracy"] is not None and row["accuracy"] is not None
        assert row["saving"] == pytest.approx(1 - row["relative_cost"])


def test_best_of_one_base_and_its_curve(use_database, tmp_path):
    zoo = small_zoo()
    saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")
    base = zoo.names[-1]

    [row] = saverzoo_json("savers", "best", base, "--dataset", "val")
    plot = tmp_path / "curve.png"
    curve = saverzoo_json("savers", "curve", base, row["saver"], "--dataset", "val", "--plot", plot)

    assert row["base"] == base
    front = curve["pareto_front"]
    assert [p["relative_cost"] for p in front] == sorted(p["relative_cost"] for p in front)
    assert [p["accuracy"] for p in front] == sorted(p["accuracy"] for p in front)
    assert any(p["saving"] == pytest.approx(row["saving"]) for p in front)
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_human_tables_show_every_base(use_database, tmp_path):
    zoo = small_zoo()
    saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")

    listed = saverzoo("models", "list")
    best = saverzoo("savers", "best", "--dataset", "val")

    assert listed.exit_code == 0 and best.exit_code == 0
    for name in zoo.names:
        assert name in listed.stdout
    assert "database" in saverzoo("db", "info").stdout


def test_importing_the_same_records_twice_changes_nothing(use_database, tmp_path):
    zoo = small_zoo()
    directory = records_dir(tmp_path, zoo)
    saverzoo("records", "import", directory, "--dataset", "val")
    first = database_checksum(use_database)  # rows, times and the search's revision

    again = saverzoo("records", "import", directory, "--dataset", "val")

    assert again.exit_code == 0, again.output
    assert f"imported 6 models ({len(zoo.names)} unchanged)" in again.stdout
    assert database_checksum(use_database) == first


def test_records_that_differ_from_stored_predictions_replace_them_only_when_asked(
    use_database, tmp_path
):
    zoo = small_zoo()
    saverzoo("records", "import", records_dir(tmp_path / "a", zoo), "--dataset", "val")
    before = database_checksum(use_database)
    other = small_zoo(seed=4)  # other predictions, the same labels and costs
    other.labels[:] = zoo.labels
    other.gmacs[:] = zoo.gmacs
    directory = records_dir(tmp_path / "b", other)

    refused = saverzoo("records", "import", directory, "--dataset", "val")

    assert refused.exit_code == 1
    assert f"records of {zoo.names[0]!r} differ from its stored predictions on 'val'" in (
        refused.stderr
    )
    assert "add --replace" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert database_checksum(use_database) == before
    replaced = saverzoo("records", "import", directory, "--dataset", "val", "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert database_checksum(use_database) != before


def test_records_that_give_a_model_another_cost_change_it_only_when_asked(use_database, tmp_path):
    """A cost is the model's on every dataset: another dataset's records may not move it."""
    zoo = small_zoo()
    saverzoo("records", "import", records_dir(tmp_path / "a", zoo), "--dataset", "val")
    answer = saverzoo_json("savers", "best", "--dataset", "val")
    before = database_checksum(use_database)
    dearer = small_zoo()
    dearer.gmacs[1] *= 3
    directory = records_dir(tmp_path / "b", dearer)

    refused = saverzoo("records", "import", directory, "--dataset", "v2")

    assert refused.exit_code == 1
    assert f"records of {zoo.names[1]!r} give it" in refused.stderr
    assert "add --replace to replace its cost" in refused.stderr
    assert database_checksum(use_database) == before  # no dataset 'v2' either
    assert saverzoo_json("savers", "best", "--dataset", "val") == answer
    replaced = saverzoo("records", "import", directory, "--dataset", "v2", "--replace")
    assert replaced.exit_code == 0, replaced.output


def test_db_upgrade_reports_the_revision(use_database):
    first = saverzoo("db", "upgrade")
    second = saverzoo("db", "upgrade")

    assert first.exit_code == 0 and "upgraded" in first.stdout
    assert second.exit_code == 0 and "already up to date" in second.stdout


# ----- bad input: one clear line, exit code != 0, database unchanged ---------------------------
def _break_labels(directory, name):
    path = directory / f"{name}_test.npz"
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["label"] = (arrays["label"] + 1) % 10
    np.savez(path, **arrays)


def _truncate(directory, name):
    path = directory / f"{name}_test.npz"
    with np.load(path) as npz:
        arrays = {k: v[..., :-1, :] if v.ndim == 3 else v[:-1] for k, v in npz.items()}
    np.savez(path, **arrays)


def _corrupt(directory, name):
    (directory / f"{name}_test.npz").write_bytes(b"not a zip file at all")


def _drop_from_complexity(directory, name):
    path = directory / "complexity_info.json"
    info = json.loads(path.read_text())
    del info[name]
    path.write_text(json.dumps(info))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_break_labels, "other labels"),
        (_truncate, "N="),
        (_corrupt, "not a readable npz"),
        (_drop_from_complexity, "no numeric macs"),
    ],
)
def test_bad_records_import_nothing(use_database, tmp_path, damage, message):
    zoo = small_zoo()
    directory = records_dir(tmp_path, zoo)
    damage(directory, zoo.names[3])
    saverzoo("db", "upgrade")
    before = row_counts(use_database)

    result = saverzoo("records", "import", directory, "--dataset", "val")

    assert result.exit_code != 0
    assert (message in result.stderr and "_test.npz" in result.stderr) or "complexity" in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert row_counts(use_database) == before


def test_records_folder_without_records_is_refused(use_database, tmp_path):
    (tmp_path / "empty").mkdir()
    result = saverzoo("records", "import", tmp_path / "empty", "--dataset", "val")
    assert result.exit_code != 0 and "complexity_info.json is missing" in result.stderr


def test_records_with_other_labels_than_the_dataset_are_refused(use_database, tmp_path):
    saverzoo("records", "import", records_dir(tmp_path, small_zoo(seed=3)), "--dataset", "val")
    before = row_counts(use_database)
    other = small_zoo(seed=4)
    result = saverzoo(
        "records", "import", records_dir(tmp_path / "other", other), "--dataset", "val"
    )
    assert result.exit_code != 0 and "another --dataset name" in result.stderr
    assert row_counts(use_database) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["savers", "best", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["savers", "best", "ghost", "--dataset", "val"], "unknown model 'ghost'"),
        (["savers", "best", "--dataset", "val", "--max-drop", "-1"], "from 0 to 100"),
        (["savers", "best", "--dataset", "val", "--max-drop", "inf"], "from 0 to 100"),
        (["savers", "best", "--dataset", "val", "--max-drop", "1e30"], "from 0 to 100"),
        (["savers", "best", "--dataset", "val", "--max-drop", "0.125"], "two decimals"),
        (["savers", "best", "--dataset", "val", "--criterion", "best"], "criterion must be"),
        (["savers", "curve", "zoo000", "zoo005", "--dataset", "val"], "is not cheaper"),
        (["savers", "refresh", "--dataset", "nope"], "unknown dataset"),
        (["models", "list", "--dataset", "nope"], "unknown dataset"),
    ],
)
def test_bad_queries_fail_with_one_line_and_change_nothing(use_database, tmp_path, args, message):
    saverzoo("records", "import", records_dir(tmp_path, small_zoo()), "--dataset", "val")
    before = row_counts(use_database)

    result = saverzoo(*args)

    assert result.exit_code != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert row_counts(use_database) == before


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SAVERZOO_DATABASE_URL", "not a url", "invalid settings"),
        (
            "SAVERZOO_DATABASE_URL",
            "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "cannot use the database",
        ),
        ("SAVERZOO_HOLDOUT_FRACTION", "2", "invalid settings"),
        ("SAVERZOO_SEARCH_BUDGETS", "[1,", "invalid settings"),  # not even parsed
        (
            "SAVERZOO_DATABASE_URL",  # the password, given in the query, is not printed
            "postgresql+psycopg://nobody@127.0.0.1:1/none?password=s3cr3t-Pw&connect_timeout=1",
            "password=***",
        ),
    ],
)
def test_bad_settings_and_unreachable_databases_fail_in_one_line(
    monkeypatch, variable, value, message
):
    from cluster.settings import get_settings

    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        result = saverzoo("models", "list")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert message in result.stderr and "s3cr3t" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_broken_config_file_fails_in_one_line(monkeypatch, tmp_path):
    from cluster.settings import get_settings

    config = tmp_path / "config.toml"
    config.write_text("database_url = \n")
    monkeypatch.setenv("SAVERZOO_CONFIG", str(config))
    get_settings.cache_clear()
    try:
        result = saverzoo("models", "list")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1 and "is not valid TOML" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_records_export_then_import_gives_the_same_best_savers(use_database, tmp_path):
    zoo = small_zoo()
    saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")

    exported = saverzoo("records", "export", "--dataset", "val", "--out", tmp_path / "export")
    again = saverzoo("records", "import", tmp_path / "export", "--dataset", "val-again")

    assert exported.exit_code == 0 and again.exit_code == 0, exported.output + again.output
    keys = (tmp_path / "export" / "sample_keys.txt").read_text().split()
    assert keys == sorted(keys) and len(keys) == len(zoo.labels)
    with np.load(tmp_path / "export" / f"{zoo.names[0]}_test.npz") as npz:
        assert npz["preds"].shape == (1, len(zoo.labels), 1)
        assert list(npz["keys"]) == keys
    assert saverzoo_json("savers", "best", "--dataset", "val-again") == saverzoo_json(
        "savers", "best", "--dataset", "val"
    )


# ----- records that cannot be stored as they are: refused whole, in one line ------------------
def _edit_npz(directory, name, **changes):
    path = directory / f"{name}_test.npz"
    with np.load(path) as npz:
        arrays = dict(npz)
    for key, change in changes.items():
        arrays[key] = change(arrays[key]) if callable(change) else change
    np.savez(path, **arrays)


def _set_cost(directory, name, **fields):
    path = directory / "complexity_info.json"
    info = json.loads(path.read_text())
    info[name].update(fields)
    path.write_text(json.dumps(info))


def _set_top1(value):
    def change(preds):
        preds = preds.astype(np.int64)
        preds[0, 0, 0] = value
        return preds

    return change


def _rename(directory, name, new):
    (directory / f"{name}_test.npz").rename(directory / f"{new}_test.npz")
    path = directory / "complexity_info.json"
    info = json.loads(path.read_text())
    info[new] = info.pop(name)
    path.write_text(json.dumps(info))


RECORDS_THAT_CANNOT_BE_STORED = {
    "a top-1 class beyond int16": (
        lambda d, n: _edit_npz(d, n, preds=_set_top1(2**40)),
        "preds range",
    ),
    "a top-1 class of MAX_CLASSES": (
        lambda d, n: _edit_npz(d, n, preds=_set_top1(2**15 - 1)),
        "falls outside 0..32766",
    ),
    "a negative prediction": (lambda d, n: _edit_npz(d, n, preds=_set_top1(-3)), "preds range"),
    "a negative label": (
        lambda d, n: [_edit_npz(d, m, label=lambda a: a - 1) for m in _names(d)],
        "label range",
    ),
    "a label of MAX_CLASSES": (
        lambda d, n: [_edit_npz(d, m, label=lambda a: a + 2**15) for m in _names(d)],
        "label range",
    ),
    "no samples": (
        lambda d, n: _edit_npz(
            d,
            n,
            label=np.zeros((0, 1), np.int64),
            preds=np.zeros((1, 0, 1), np.int64),
            confs=np.zeros((1, 0, 1)),
        ),
        "at least one exit, sample and class",
    ),
    "no classes per sample": (
        lambda d, n: _edit_npz(d, n, preds=lambda a: a[..., :0], confs=lambda a: a[..., :0]),
        "at least one exit, sample and class",
    ),
    "no exits": (
        lambda d, n: _edit_npz(d, n, preds=lambda a: a[:0], confs=lambda a: a[:0]),
        "at least one exit, sample and class",
    ),
    "macs Infinity": (lambda d, n: _set_cost(d, n, macs=float("inf")), "finite number"),
    "macs NaN": (lambda d, n: _set_cost(d, n, macs=float("nan")), "finite number"),
    "macs true": (lambda d, n: _set_cost(d, n, macs=True), "must be a number"),
    "macs a string": (lambda d, n: _set_cost(d, n, macs="4e9"), "must be a number"),
    "macs negative": (lambda d, n: _set_cost(d, n, macs=-1e9), "is outside (0"),
    "macs zero": (lambda d, n: _set_cost(d, n, macs=0), "is outside (0"),
    "params Infinity": (lambda d, n: _set_cost(d, n, params=float("inf")), "finite number"),
    "params false": (lambda d, n: _set_cost(d, n, params=False), "must be a number"),
    "repeated sample keys": (
        lambda d, n: [
            _edit_npz(d, m, keys=np.array(["same"] * len(_labels(d, m)))) for m in _names(d)
        ],
        "appears more than once",
    ),
    "a model name with a space": (lambda d, n: _rename(d, n, "my model"), "contains ' '"),
    "a model name of 200 characters": (lambda d, n: _rename(d, n, "m" * 200), "characters"),
    "a model name starting with a dot": (lambda d, n: _rename(d, n, ".hidden"), "start with"),
}


def _names(directory):
    return [p.name[: -len("_test.npz")] for p in directory.glob("*_test.npz")]


def _labels(directory, name):
    with np.load(directory / f"{name}_test.npz") as npz:
        return npz["label"]


@pytest.mark.parametrize("case", list(RECORDS_THAT_CANNOT_BE_STORED))
def test_records_that_cannot_be_stored_as_they_are_import_nothing(use_database, tmp_path, case):
    damage, message = RECORDS_THAT_CANNOT_BE_STORED[case]
    zoo = small_zoo()
    directory = records_dir(tmp_path, zoo)
    damage(directory, zoo.names[2])
    saverzoo("db", "upgrade")
    before = row_counts(use_database)

    result = saverzoo("records", "import", directory, "--dataset", "val")

    assert result.exit_code == 1, result.output
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    assert row_counts(use_database) == before


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("", "is empty"),
        ("d" * 5000, "5000 characters"),
        ("a/b", "contains '/'"),
        ("..", "contains '..'"),
        ("val\nother", "contains '\\n'"),
    ],
)
def test_a_records_dataset_name_must_be_a_valid_name(use_database, tmp_path, dataset, message):
    directory = records_dir(tmp_path, small_zoo())
    saverzoo("db", "upgrade")
    before = row_counts(use_database)

    result = saverzoo("records", "import", directory, "--dataset", dataset)

    assert result.exit_code == 1 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert row_counts(use_database) == before


def test_records_without_a_prediction_for_some_samples_import_as_wrong_answers(
    use_database, tmp_path
):
    """-1 with probability 0 is what saverzoo's exports write for an image that did not decode."""
    zoo = small_zoo()
    directory = records_dir(tmp_path, zoo)
    _edit_npz(
        directory,
        zoo.names[2],
        preds=_set_top1(-1),
        confs=lambda a: np.where(np.arange(a.shape[1])[None, :, None] == 0, 0.0, a),
    )

    result = saverzoo("records", "import", directory, "--dataset", "val")

    assert result.exit_code == 0, result.output
    classes, probabilities = _stored_top1(use_database, "val", zoo.names[2])
    assert classes[0] == -1 and probabilities[0] == 0.0  # never equal to a label: a wrong answer
    assert (classes[1:] == zoo.predictions[2, 1:]).all()  # the other samples as recorded
    right_elsewhere = (zoo.predictions[2, 1:] == zoo.labels[1:]).sum()
    shown = saverzoo_json("models", "show", zoo.names[2])
    assert shown["accuracy"]["val"] == pytest.approx(right_elsewhere / len(zoo.labels))


def _stored_top1(url, dataset_name, model_name):
    from db.queries import get_dataset, get_model, top1_predictions
    from db.session import session_factory

    with session_factory(url).begin() as session:
        dataset = get_dataset(session, dataset_name)
        classes, probabilities = top1_predictions(
            session, dataset, [get_model(session, model_name).id]
        )
    return classes[0], probabilities[0]


def test_records_of_a_registered_model_at_another_cost_are_refused(use_database, tmp_path):
    """A timm or checkpoint model keeps its measured cost: records under its name at another cost
    are another model's, so they are refused (at the same cost they are its predictions)."""
    from db.models import Model
    from db.session import session_factory

    zoo = small_zoo()
    saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")
    with session_factory(use_database).begin() as session:
        model = session.query(Model).filter_by(name=zoo.names[2]).one()
        model.source, model.arch = "timm", "test_resnet"
    before = row_counts(use_database)
    models_before = saverzoo_json("models", "list")
    other = small_zoo(seed=3)
    other.gmacs[2] *= 3

    refused = saverzoo("records", "import", records_dir(tmp_path / "b", other), "--dataset", "v2")
    same_cost = saverzoo(
        "records", "import", records_dir(tmp_path / "c", small_zoo(seed=3)), "--dataset", "v3"
    )

    assert refused.exit_code == 1 and "cannot join the model of that name" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert same_cost.exit_code == 0, same_cost.output
    assert saverzoo_json("models", "list") == models_before  # its cost and source kept
    assert row_counts(use_database)["models"] == before["models"]


def test_records_export_to_a_file_or_below_one_is_one_line(use_database, tmp_path):
    saverzoo("records", "import", records_dir(tmp_path, small_zoo()), "--dataset", "val")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")

    for target, message in [(a_file, "is a file"), (a_file / "below", "Not a directory")]:
        result = saverzoo("records", "export", "--dataset", "val", "--out", target)
        assert result.exit_code == 1, result.output
        assert message in result.stderr and "--out" in result.stderr, result.stderr
        assert "cannot use the database" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert a_file.read_text() == "not a folder"


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_imports_at_once_into_one_new_dataset_end_in_one_line_each(use_database, tmp_path):
    """Both create the dataset; the database keeps the first, the second says so in one line."""
    import subprocess
    import sys

    directory = records_dir(tmp_path, small_zoo())
    command = [
        sys.executable,
        "-m",
        "orchestrator",
        "records",
        "import",
        str(directory),
        "--dataset",
        "both",
    ]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]

    assert sorted(code for code, _, _ in results) in ([0, 0], [0, 1])
    for code, _, stderr in results:
        assert code or stderr == ""  # no progress bar, not even a blank line, in a pipe
        if code:
            assert stderr.strip().startswith("error: another command wrote the same rows")
            assert len(stderr.strip().splitlines()) == 1
    assert row_counts(use_database)["datasets"] == 1


def test_a_dataset_name_that_differs_from_a_stored_one_only_in_case_is_refused(
    use_database, tmp_path
):
    directory = records_dir(tmp_path, small_zoo())
    saverzoo("records", "import", directory, "--dataset", "val")
    before = database_checksum(use_database)

    twin = saverzoo("records", "import", directory, "--dataset", "VAL")

    assert twin.exit_code == 1
    assert "dataset name 'VAL' differs from the stored dataset 'val' only in case" in twin.stderr
    assert database_checksum(use_database) == before
