"""Bulk upserts: small and large batches (COPY on PostgreSQL) end in the same rows."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import Dataset, Model, PairResult, utc_now
from db.schema import ensure_schema
from db.session import session_factory
from db.upsert import COPY_MIN_ROWS, upsert

KEY = ["dataset_id", "base_id", "saver_id", "criterion", "max_drop_centipoints", "confidence"]


def pair_rows(dataset_id, model_ids, saving):
    now = utc_now()
    metrics = dict.fromkeys(
        [
            "threshold",
            "exit_ratio",
            "accuracy",
            "base_accuracy",
            "relative_cost",
            "holdout_threshold",
            "holdout_calibration_accuracy",
            "holdout_calibration_saving",
            "holdout_exit_ratio",
            "holdout_accuracy",
            "holdout_base_accuracy",
            "holdout_saving",
        ],
        0.5,
    )
    return [
        {
            "dataset_id": dataset_id,
            "base_id": base,
            "saver_id": saver,
            "criterion": "budget",
            "max_drop_centipoints": 0,
            "confidence": "max",
            "saving": saving,
            "computed_at": now,
            **metrics,
        }
        for base in model_ids
        for saver in model_ids
        if saver < base
    ]


@pytest.mark.parametrize("num_models", [5, 40])  # 10 rows, and 780 rows: above COPY_MIN_ROWS
def test_upsert_twice_keeps_one_row_per_key_with_the_last_values(database_url, num_models):
    ensure_schema(database_url)
    with session_factory(database_url).begin() as session:
        dataset = Dataset(name="val", num_samples=1, num_classes=1, budgets_centipoints=[0])
        session.add(dataset)
        models = [Model(name=f"m{i}", source="records", gmacs=float(i)) for i in range(num_models)]
        session.add_all(models)
        session.flush()
        ids = [m.id for m in models]
        first = pair_rows(dataset.id, ids, saving=0.1)
        upsert(session, PairResult, first, KEY)
        # A second batch repeats every key, some twice: the last row of a key wins.
        second = pair_rows(dataset.id, ids, saving=0.2) + pair_rows(dataset.id, ids, saving=0.3)
        upsert(session, PairResult, second, KEY)

    with session_factory(database_url).begin() as session:
        savings = session.scalars(select(PairResult.saving)).all()
    assert len(savings) == len(first) == num_models * (num_models - 1) // 2
    assert set(savings) == {0.3}
    assert (len(first) >= COPY_MIN_ROWS) == (num_models == 40)
