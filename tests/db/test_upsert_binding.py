"""Bulk upserts store exactly what SQLAlchemy's own INSERT stores, and nothing on failure.

``db.upsert`` binds SQLite values as tuples and COPYs large PostgreSQL batches in binary: rows
read back through the ORM must equal those SQLAlchemy writes from the same dictionaries.
"""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from db.models import Dataset, Model, PairResult
from db.schema import ensure_schema
from db.session import session_factory
from db.upsert import COPY_MIN_ROWS, upsert
from search.pairs import COLUMNS

KEY = ["dataset_id", "base_id", "saver_id", "criterion", "max_drop_centipoints", "confidence"]
METRICS = list(COLUMNS)
STAMP = datetime.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=datetime.UTC)


def setup(url: str, num_models: int) -> tuple[list[int], list[int]]:
    """Two datasets (one written by ``upsert``, one by SQLAlchemy) and ``num_models`` models."""
    ensure_schema(url)
    with session_factory(url).begin() as session:
        datasets = [
            Dataset(name=name, num_samples=1, num_classes=1, budgets_centipoints=[0])
            for name in ("upserted", "inserted")
        ]
        models = [Model(name=f"m{i}", source="records", gmacs=float(i)) for i in range(num_models)]
        session.add_all([*datasets, *models])
        session.flush()
        return [d.id for d in datasets], [m.id for m in models]


def rows_of(dataset_id: int, model_ids: list[int], stamps: list, omit: str | None = None):
    """Rows with awkward floats: numpy scalars, extremes, values that need all 17 digits."""
    rng = np.random.default_rng(7)
    awkward = [0.1, 1 / 3, -0.0, 5e-324, 1.7976931348623157e308, np.float64(2 / 3), -1e-12]
    rows = []
    for i, (base, saver) in enumerate((b, s) for b in model_ids for s in model_ids if s < b):
        row = {
            "dataset_id": dataset_id,
            "base_id": base,
            "saver_id": saver,
            "criterion": "budget" if i % 2 else "paper",
            "max_drop_centipoints": i % 3,
            "confidence": "max",
            "computed_at": stamps[i % len(stamps)],
        }
        for j, column in enumerate(METRICS):
            row[column] = awkward[(i + j) % len(awkward)] if j % 4 == 0 else rng.random()
        if omit is not None:
            del row[omit]
        rows.append(row)
    return rows


def stored(url: str, dataset_id: int) -> list[tuple]:
    skip = {"id", "dataset_id"}
    columns = [c for c in PairResult.__table__.columns if c.key not in skip]
    with session_factory(url).begin() as session:
        pairs = session.scalars(
            select(PairResult)
            .where(PairResult.dataset_id == dataset_id)
            .order_by(PairResult.base_id, PairResult.saver_id)
        ).all()
        return [tuple(getattr(pair, c.key) for c in columns) for pair in pairs]


@pytest.mark.parametrize("num_models", [5, 30])  # 10 rows, and 435 rows: the COPY on PostgreSQL
@pytest.mark.parametrize(
    "stamps",
    [[STAMP], [STAMP, STAMP + datetime.timedelta(microseconds=1)], [STAMP.replace(tzinfo=None)]],
    ids=["one timestamp", "two timestamps", "naive timestamp"],
)
def test_upserted_rows_read_back_as_sqlalchemy_inserts_them(database_url, num_models, stamps):
    (upserted, inserted), model_ids = setup(database_url, num_models)
    with session_factory(database_url).begin() as session:
        upsert(session, PairResult, rows_of(upserted, model_ids, stamps), KEY)
        session.execute(insert(PairResult), rows_of(inserted, model_ids, stamps))
    assert (num_models * (num_models - 1) // 2 >= COPY_MIN_ROWS) == (num_models == 30)
    assert stored(database_url, upserted) == stored(database_url, inserted)
    assert len(stored(database_url, upserted)) == num_models * (num_models - 1) // 2


def test_a_column_left_out_takes_its_python_default(database_url):
    (dataset_id, _), model_ids = setup(database_url, 5)
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    with session_factory(database_url).begin() as session:
        upsert(session, PairResult, rows_of(dataset_id, model_ids, [STAMP], "computed_at"), KEY)
    after = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    stamps = {row[-1].replace(tzinfo=None) for row in stored(database_url, dataset_id)}
    assert stamps and all(before <= stamp <= after for stamp in stamps)


@pytest.mark.parametrize("num_models", [5, 30])
def test_a_failing_batch_leaves_nothing_of_its_transaction(database_url, num_models):
    (dataset_id, _), model_ids = setup(database_url, num_models)
    rows = rows_of(dataset_id, model_ids, [STAMP])
    rows[-1]["saver_id"] = max(model_ids) + 1  # no such model: the foreign key refuses it
    with pytest.raises(IntegrityError):
        with session_factory(database_url).begin() as session:
            upsert(session, PairResult, rows[:-1], KEY)
            upsert(session, PairResult, rows, KEY)
    assert stored(database_url, dataset_id) == []
