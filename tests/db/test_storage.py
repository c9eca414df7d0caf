"""Prediction storage: compact arrays, idempotent upserts, keys that must match the shard."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select, text

from cluster.errors import SchemaOutOfDate
from db.arrays import class_dtype, from_npy, to_npy
from db.models import Dataset, PredictionChunk
from db.queries import add_shard, keys_digest, store_chunk, top1_predictions, upsert_model
from db.schema import ensure_schema
from db.session import engine_for, session_factory

N = 50_000


def make_dataset(session, num_classes=1000, n=N):
    dataset = Dataset(name="val", num_samples=n, num_classes=num_classes, budgets_centipoints=[0])
    session.add(dataset)
    session.flush()
    keys = [f"{i:08d}" for i in range(n)]
    add_shard(session, dataset, 0, keys, np.arange(n) % num_classes)
    return dataset, keys


def test_npy_round_trip_keeps_dtype_and_never_pickles():
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    assert np.array_equal(from_npy(to_npy(array)), array)
    assert from_npy(to_npy(array)).dtype == np.int16
    with pytest.raises(ValueError):
        to_npy(np.array([object()], dtype=object))


def test_class_indices_use_the_smallest_integer_type():
    assert class_dtype(1000) == np.int16
    assert class_dtype(32_768) == np.int16
    assert class_dtype(32_769) == np.int32


def test_top1_costs_at_most_8_bytes_per_sample_per_model(database_url):
    ensure_schema(database_url)
    rng = np.random.default_rng(0)
    with session_factory(database_url).begin() as session:
        dataset, keys = make_dataset(session)
        model = upsert_model(session, name="m", source="records", gmacs=1.0)
        store_chunk(
            session,
            model=model,
            dataset=dataset,
            shard_index=0,
            keys_digest_=keys_digest(keys),
            topk_classes=rng.integers(0, 1000, (N, 1)),
            topk_probs=rng.random((N, 1)),
        )
    with session_factory(database_url).begin() as session:
        stored = session.execute(
            select(
                func.length(PredictionChunk.topk_classes), func.length(PredictionChunk.topk_probs)
            )
        ).one()
    assert sum(stored) / N <= 8


def test_storing_a_chunk_twice_keeps_one_row_with_the_new_values(database_url):
    ensure_schema(database_url)
    with session_factory(database_url).begin() as session:
        dataset, keys = make_dataset(session, num_classes=10, n=100)
        model = upsert_model(session, name="m", source="records", gmacs=1.0)
        for probs in (0.25, 0.75):
            store_chunk(
                session,
                model=model,
                dataset=dataset,
                shard_index=0,
                keys_digest_=keys_digest(keys),
                topk_classes=np.zeros((100, 1), dtype=int),
                topk_probs=np.full((100, 1), probs),
            )
        assert session.scalar(select(func.count()).select_from(PredictionChunk)) == 1
        _classes, probs = top1_predictions(session, dataset, [model.id])
    assert probs.shape == (1, 100) and np.all(probs == 0.75)


def test_predictions_on_other_samples_are_refused(database_url):
    ensure_schema(database_url)
    with session_factory(database_url).begin() as session:
        dataset, keys = make_dataset(session, num_classes=10, n=100)
        model = upsert_model(session, name="m", source="records", gmacs=1.0)
        with pytest.raises(ValueError, match="other samples"):
            store_chunk(
                session,
                model=model,
                dataset=dataset,
                shard_index=0,
                keys_digest_=keys_digest(reversed(keys)),
                topk_classes=np.zeros((100, 1), dtype=int),
                topk_probs=np.ones((100, 1)),
            )
        assert session.scalar(select(func.count()).select_from(PredictionChunk)) == 0


@pytest.mark.postgres
def test_a_server_database_at_an_older_schema_says_what_to_run(postgres_url):
    ensure_schema(postgres_url)
    with engine_for(postgres_url).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(SchemaOutOfDate, match="run `saverzoo db upgrade`"):
        ensure_schema(postgres_url)
