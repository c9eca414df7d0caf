"""The incremental service: adding models one at a time ends where a full computation ends."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import aliased

from db.models import BestSaver, Dataset, Model, PairResult
from db.queries import get_dataset
from db.schema import ensure_schema
from db.session import session_factory
from orchestrator.ingest.records_import import import_records
from search.service import SaverSearch
from tests.factories import records_dir, row_counts, small_zoo

BUDGETS = [0.0, 0.5, 2.0]


def stored_results(url: str, dataset: str | None = None) -> tuple[dict, dict]:
    """Every pair row (by names) and every best saver (by names), without ids or timestamps."""
    base, saver = aliased(Model), aliased(Model)
    skip = {"id", "dataset_id", "base_id", "saver_id", "computed_at"}
    only = (
        [Dataset.name == dataset] if dataset is not None else []
    )  # a dataset's rows, or every dataset's
    with session_factory(url).begin() as session:
        pairs = {}
        for pair, base_name, saver_name in session.execute(
            select(PairResult, base.name, saver.name)
            .join(base, base.id == PairResult.base_id)
            .join(saver, saver.id == PairResult.saver_id)
            .join(Dataset, Dataset.id == PairResult.dataset_id)
            .where(*only)
        ):
            key = (base_name, saver_name, pair.criterion, pair.max_drop_centipoints)
            values = {c.key: getattr(pair, c.key) for c in PairResult.__table__.columns}
            pairs[key] = {k: v for k, v in values.items() if k not in skip}
        best = {
            (base_name, b.criterion, b.max_drop_centipoints, b.selection): saver_name
            for b, base_name, saver_name in session.execute(
                select(BestSaver, base.name, saver.name)
                .join(PairResult, PairResult.id == BestSaver.pair_id)
                .join(base, base.id == BestSaver.base_id)
                .join(saver, saver.id == PairResult.saver_id)
                .join(Dataset, Dataset.id == BestSaver.dataset_id)
                .where(*only)
            )
        }
    return pairs, best


def add_records(url, directory, zoo, names=None, dataset="val", search=None, replace=False):
    """Import (some of) the zoo's records into ``dataset``, as `saverzoo records import` does
    (``replace``: as with --replace, for a model evaluated again)."""
    ensure_schema(url)
    with session_factory(url).begin() as session:
        import_records(
            session,
            records_dir(directory, zoo, names),
            dataset,
            budgets=BUDGETS,
            holdout_fraction=0.5,
            search=search or SaverSearch(),
            replace=replace,
        )


def import_all_at_once(url, tmp_path, zoo):
    add_records(url, tmp_path / "all", zoo)


@pytest.mark.parametrize("seed", [0, 1])
def test_adding_models_one_by_one_in_random_order_equals_full_computation(
    database_url, tmp_path, seed
):
    zoo = small_zoo(num_models=7, num_samples=500, seed=seed)
    full_url = f"sqlite:///{tmp_path / 'full.db'}"
    import_all_at_once(full_url, tmp_path, zoo)
    order = zoo.names[:]
    random.Random(seed).shuffle(order)

    ensure_schema(database_url)
    search = SaverSearch()  # one long-lived service: its cached zoo grows model by model
    for step, name in enumerate(order):
        add_records(database_url, tmp_path / str(step), zoo, [name], search=search)

    incremental_pairs, incremental_best = stored_results(database_url)
    full_pairs, full_best = stored_results(full_url)
    assert incremental_pairs == full_pairs
    assert incremental_best == full_best
    assert len(full_pairs) == 7 * 6 // 2 * (len(BUDGETS) + 1)


def test_refresh_computes_exactly_the_missing_pairs(database_url, tmp_path):
    zoo = small_zoo()
    import_all_at_once(database_url, tmp_path, zoo)
    complete = stored_results(database_url)
    with session_factory(database_url).begin() as session:
        session.execute(delete(BestSaver))
        session.execute(delete(PairResult).where(PairResult.criterion == "paper"))

    with session_factory(database_url).begin() as session:
        summary = SaverSearch().refresh(session, get_dataset(session, "val"))
    with session_factory(database_url).begin() as session:
        again = SaverSearch().refresh(session, get_dataset(session, "val"))

    assert summary.pairs_computed == 6 * 5 // 2
    assert again.pairs_computed == 0
    assert stored_results(database_url)[0] == complete[0]


def test_a_reevaluated_best_saver_that_got_worse_is_replaced(database_url, tmp_path):
    zoo = small_zoo(num_models=5, num_samples=600, seed=5)
    import_all_at_once(database_url, tmp_path, zoo)
    _, best = stored_results(database_url)
    key = (zoo.names[-1], "budget", 0, "in_sample")  # the dearest base: 4 candidate savers
    weakened = best[key]
    # The same model, re-evaluated: now wrong and fully confident everywhere.
    row = zoo.names.index(weakened)
    zoo.predictions[row] = (zoo.labels + 1) % 10
    zoo.confidence[row] = 1.0

    add_records(database_url, tmp_path / "again", zoo, [weakened], replace=True)

    full_url = f"sqlite:///{tmp_path / 'full.db'}"
    import_all_at_once(full_url, tmp_path / "f", zoo)
    assert stored_results(database_url) == stored_results(full_url)
    assert stored_results(database_url)[1].get(key) != weakened


@pytest.mark.slow
def test_concurrent_imports_miss_no_pair_and_duplicate_no_row(database_url, tmp_path):
    zoo = small_zoo(num_models=8, num_samples=800, seed=9)
    ensure_schema(database_url)
    add_records(database_url, tmp_path / "first", zoo, zoo.names[:2])
    env = {**os.environ, "SAVERZOO_DATABASE_URL": database_url}
    halves = [zoo.names[2:5], zoo.names[5:]]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "records",
                "import",
                str(records_dir(tmp_path / f"half{i}", zoo, names)),
                "--dataset",
                "val",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, names in enumerate(halves)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr

    full_url = f"sqlite:///{tmp_path / 'full.db'}"
    import_all_at_once(full_url, tmp_path, zoo)
    incremental, full = stored_results(database_url), stored_results(full_url)
    # The dataset keeps the budgets it was created with, whichever process adds models.
    assert incremental == full
    assert len(full[0]) == 8 * 7 // 2 * (len(BUDGETS) + 1)
    assert row_counts(database_url)["prediction_chunks"] == 8


def test_a_model_reevaluated_at_another_cost_swaps_roles_cleanly(database_url, tmp_path):
    zoo = small_zoo(num_models=5, num_samples=600, seed=6)
    import_all_at_once(database_url, tmp_path, zoo)
    # The cheapest model is re-evaluated at a larger input: now the dearest of all.
    zoo.gmacs[0] = zoo.gmacs[-1] * 2

    add_records(database_url, tmp_path / "again", zoo, [zoo.names[0]], replace=True)

    full_url = f"sqlite:///{tmp_path / 'full.db'}"
    import_all_at_once(full_url, tmp_path / "f", zoo)
    pairs, best = stored_results(database_url)
    assert (pairs, best) == stored_results(full_url)
    assert not any(saver == zoo.names[0] for saver in best.values())


def test_a_cost_change_seen_on_one_dataset_updates_the_others(database_url, tmp_path):
    zoo = small_zoo(num_models=5, num_samples=400, seed=8)
    import_all_at_once(database_url, tmp_path / "a", zoo)  # dataset "val"
    changed = small_zoo(num_models=5, num_samples=400, seed=8)
    changed.gmacs[1] = changed.gmacs[1] * 1.01  # a small change: no model swaps roles
    add_records(database_url, tmp_path / "b", changed, dataset="other", replace=True)

    full_url = f"sqlite:///{tmp_path / 'full.db'}"
    import_all_at_once(full_url, tmp_path / "f", changed)
    with session_factory(database_url).begin() as session:
        val = get_dataset(session, "val")
        assert SaverSearch().refresh(session, val).pairs_computed == 0  # nothing left stale
    assert stored_results(database_url, "val") == stored_results(full_url, "val")


def test_a_long_lived_service_notices_updates_made_by_another(database_url, tmp_path):
    zoo = small_zoo(num_models=6, num_samples=500, seed=10)
    ensure_schema(database_url)
    mine, theirs = SaverSearch(), SaverSearch()  # two processes' services

    def add(search, names, directory):
        add_records(database_url, tmp_path / directory, zoo, names, search=search, replace=True)

    add(mine, zoo.names[:3], "first")  # mine caches the zoo
    zoo.confidence[1] = 1.0  # the other process re-evaluates a model mine has cached
    add(theirs, [zoo.names[1]], "reevaluated")
    add(mine, zoo.names[3:], "rest")  # mine must not compute with its stale copy

    full_url = f"sqlite:///{tmp_path / 'full.db'}"
    import_all_at_once(full_url, tmp_path / "f", zoo)
    assert stored_results(database_url) == stored_results(full_url)
