"""Stored search arrays: exactly what the prediction chunks give, and never served once a model's
predictions or the dataset's labels have changed, whichever path changed them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from sqlalchemy import event, func, inspect, select

from cluster.errors import InputError
from db.models import Dataset, Model, PredictionRevision, StoredSearchArrays
from db.queries import (
    add_shard,
    dataset_labels,
    get_dataset,
    get_model,
    keys_digest,
    store_chunk,
    top1_predictions,
    upsert_model,
)
from db.schema import alembic_config, ensure_schema, head_revision
from db.search_arrays import SearchArrays, blob_size, decode, encode, load_search_arrays
from db.session import engine_for, session_factory
from search.criteria import CONFIDENCES, MARGIN, MAX_PROBABILITY
from search.synthetic import SyntheticZoo, make_zoo, write_records

SHARD_SIZES = (300, 200)  # two shards: rows are laid out shard after shard
N = sum(SHARD_SIZES)
TOP_K = 3


def shard_keys(shard: int) -> list[str]:
    start = sum(SHARD_SIZES[:shard])
    return [f"{i:06d}" for i in range(start, start + SHARD_SIZES[shard])]


def random_topk(rng: np.random.Generator, n: int, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """Top-k classes and descending probabilities, rounded so that confidences tie."""
    probs = -np.sort(-np.round(rng.dirichlet(np.ones(10), n)[:, :k], 2), axis=1)
    return rng.integers(0, 10, (n, k)), probs.astype(np.float32)


def write_model(session, dataset: Dataset, name: str, seed: int, k: int = TOP_K) -> Model:
    """A model's chunks on every shard, through ``store_chunk``."""
    model = upsert_model(session, name=name, source="records", gmacs=1.0 + seed)
    rng = np.random.default_rng(seed)
    for shard, size in enumerate(SHARD_SIZES):
        classes, probs = random_topk(rng, size, k)
        store_chunk(
            session,
            model=model,
            dataset=dataset,
            shard_index=shard,
            keys_digest_=keys_digest(shard_keys(shard)),
            topk_classes=classes,
            topk_probs=probs,
        )
    return model


def make_zoo_db(url: str, models: int = 4) -> list[int]:
    ensure_schema(url)
    with session_factory(url).begin() as session:
        dataset = Dataset(name="val", num_samples=N, num_classes=10, budgets_centipoints=[0])
        session.add(dataset)
        session.flush()
        labels = np.random.default_rng(99).integers(0, 10, N)
        for shard, size in enumerate(SHARD_SIZES):
            start = sum(SHARD_SIZES[:shard])
            add_shard(session, dataset, shard, shard_keys(shard), labels[start : start + size])
        return [write_model(session, dataset, f"m{i}", seed=i).id for i in range(models)]


def load(url: str, model_ids: list[int], confidence: str = MAX_PROBABILITY):
    with session_factory(url).begin() as session:
        return load_search_arrays(session, get_dataset(session, "val"), model_ids, confidence)


def assert_as_the_chunks_give(url: str, arrays, model_ids: list[int], confidence: str) -> None:
    with session_factory(url).begin() as session:
        dataset = get_dataset(session, "val")
        classes, values = top1_predictions(session, dataset, model_ids, confidence)
        labels = dataset_labels(session, dataset)
    assert arrays.correct.dtype == np.uint8 and arrays.order.dtype == np.uint32
    assert np.array_equal(arrays.correct, (classes == labels).astype(np.uint8))
    assert np.array_equal(arrays.confidence, values)
    assert np.array_equal(
        np.sort(arrays.order, axis=1), np.broadcast_to(np.arange(N), values.shape)
    )
    in_order = np.take_along_axis(values, arrays.order.astype(np.int64), axis=1)
    assert np.all(np.diff(in_order, axis=1) <= 0)


# ----- the blob ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [9, 50_000, 70_000])
def test_a_blob_decodes_to_what_was_encoded(n):
    rng = np.random.default_rng(n)
    correct, values = rng.random(n) < 0.7, rng.random(n).astype(np.float32)
    order = np.argsort(-values).astype(np.uint32)
    blob = encode(correct, values, order)
    assert len(blob) == blob_size(n)
    decoded_values, decoded_order, bits = decode(blob, n)
    assert np.array_equal(decoded_values, values)
    assert np.array_equal(decoded_order, order)
    assert np.array_equal(np.unpackbits(bits, count=n), correct)


def test_a_model_costs_306_250_bytes_a_signal_at_50_000_samples():
    # float32 confidences, uint16 order indices, one bit of correctness per sample
    assert blob_size(50_000) == 50_000 * 4 + 50_000 * 2 + 6_250 == 306_250
    assert blob_size(100_000) == 100_000 * 8 + 12_500  # uint32 indices above 65,536 samples


# ----- the loader -------------------------------------------------------------------------------
@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_the_loader_gives_what_the_chunks_give_then_reads_it_stored(database_url, confidence):
    model_ids = make_zoo_db(database_url)
    asked = model_ids[::-1]  # rows follow the order asked for, not the ids'
    first = load(database_url, asked, confidence)
    assert first.derived == tuple(asked)
    assert_as_the_chunks_give(database_url, first, asked, confidence)
    again = load(database_url, asked, confidence)
    assert again.derived == ()
    assert_as_the_chunks_give(database_url, again, asked, confidence)
    assert np.array_equal(again.order, first.order)
    subset = load(database_url, [model_ids[2]], confidence)
    assert subset.derived == ()
    assert_as_the_chunks_give(database_url, subset, [model_ids[2]], confidence)


def test_the_loader_fills_the_callers_buffers(database_url):
    model_ids = make_zoo_db(database_url, models=3)
    expected = load(database_url, model_ids)
    spare = 2  # a buffer with room for more models, as a growing zoo keeps
    buffers = [np.zeros((3 + spare, N), dtype=t) for t in (np.uint8, np.float32, np.uint32)]
    out = SearchArrays(buffers[0][:3], buffers[1][:3], buffers[2][:3], derived=())
    with session_factory(database_url).begin() as session:
        dataset = get_dataset(session, "val")
        filled = load_search_arrays(session, dataset, model_ids, MAX_PROBABILITY, out=out)
        with pytest.raises(ValueError, match="out arrays must be"):
            load_search_arrays(session, dataset, model_ids[:2], MAX_PROBABILITY, out=out)
    assert filled.correct is out.correct and filled.order is out.order
    assert np.array_equal(buffers[0][:3], expected.correct)
    assert np.array_equal(buffers[1][:3], expected.confidence)
    assert np.array_equal(buffers[2][:3], expected.order)
    assert not buffers[1][3:].any()


def test_each_signal_is_stored_apart(database_url):
    model_ids = make_zoo_db(database_url, models=1)
    load(database_url, model_ids, MAX_PROBABILITY)
    assert load(database_url, model_ids, MARGIN).derived == tuple(model_ids)
    assert load(database_url, model_ids, MAX_PROBABILITY).derived == ()


def test_margin_of_a_model_stored_with_its_top1_alone_is_refused(database_url):
    make_zoo_db(database_url, models=0)
    with session_factory(database_url).begin() as session:
        model_id = write_model(session, get_dataset(session, "val"), "top1", seed=5, k=1).id
    with pytest.raises(InputError, match="only its top-1"):
        load(database_url, [model_id], MARGIN)
    assert load(database_url, [model_id], MAX_PROBABILITY).derived == (model_id,)


# ----- never stale ------------------------------------------------------------------------------
@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_a_chunk_stored_again_is_never_served_stale(database_url, confidence):
    model_ids = make_zoo_db(database_url)
    before = load(database_url, model_ids, confidence)
    with session_factory(database_url).begin() as session:
        write_model(session, get_dataset(session, "val"), "m1", seed=41)  # re-evaluated
    after = load(database_url, model_ids, confidence)
    assert after.derived == (model_ids[1],)
    assert_as_the_chunks_give(database_url, after, model_ids, confidence)
    assert not np.array_equal(after.confidence[1], before.confidence[1])
    assert np.array_equal(after.confidence[[0, 2, 3]], before.confidence[[0, 2, 3]])


def test_a_workers_shard_result_is_never_served_stale(database_url):
    from workers.report import ShardPredictions
    from workers.store import store_shard_result

    model_ids = make_zoo_db(database_url)
    load(database_url, model_ids)
    classes, probs = random_topk(np.random.default_rng(7), SHARD_SIZES[1])
    with session_factory(database_url).begin() as session:
        store_shard_result(
            session,
            "val",
            1,
            shard_keys(1),
            {"m0": ShardPredictions(classes, probs), "m3": ShardPredictions(classes, probs)},
            {},
            {"m0": model_ids[0], "m3": model_ids[3]},
        )
    after = load(database_url, model_ids)
    assert after.derived == (model_ids[0], model_ids[3])
    assert_as_the_chunks_give(database_url, after, model_ids, MAX_PROBABILITY)
    assert np.array_equal(after.confidence[3, SHARD_SIZES[0] :], probs[:, 0])


def test_records_imported_again_with_replace_are_never_served_stale(database_url, tmp_path):
    from orchestrator.ingest.records_import import import_records
    from search.service import SaverSearch

    ensure_schema(database_url)
    zoo = make_zoo(3, 400, seed=3)
    search = SaverSearch()

    def import_(records: SyntheticZoo, directory: Path, replace: bool) -> None:
        with session_factory(database_url).begin() as session:
            import_records(
                session,
                write_records(records, directory),
                "val",
                budgets=[1.0],
                holdout_fraction=0.5,
                search=search,
                replace=replace,
            )

    import_(zoo, tmp_path / "first", replace=False)
    with session_factory(database_url).begin() as session:
        dataset = get_dataset(session, "val")
        model_ids = [get_model(session, name).id for name in zoo.names]
        before = load_search_arrays(session, dataset, model_ids, MAX_PROBABILITY)
    changed = zoo.confidence.copy()
    changed[1] = np.round(1.0 - changed[1], 4)
    predictions = zoo.predictions.copy()
    predictions[1] = (zoo.labels + 1) % 1000  # every answer of the model is now wrong
    replaced = dataclasses.replace(zoo, confidence=changed, predictions=predictions)
    import_(replaced, tmp_path / "again", replace=True)
    with session_factory(database_url).begin() as session:
        after = load_search_arrays(session, get_dataset(session, "val"), model_ids, MAX_PROBABILITY)
    assert np.array_equal(after.confidence[1], changed[1]) and not after.correct[1].any()
    assert np.array_equal(after.correct[[0, 2]], before.correct[[0, 2]])


def test_changed_labels_are_never_served_stale(database_url):
    model_ids = make_zoo_db(database_url)
    before = load(database_url, model_ids)
    with session_factory(database_url).begin() as session:
        dataset = get_dataset(session, "val")
        labels = dataset_labels(session, dataset)[: SHARD_SIZES[0]]
        add_shard(session, dataset, 0, shard_keys(0), (labels + 1) % 10)
    after = load(database_url, model_ids)
    assert after.derived == tuple(model_ids)
    assert_as_the_chunks_give(database_url, after, model_ids, MAX_PROBABILITY)
    assert not np.array_equal(after.correct, before.correct)


def test_a_removed_model_takes_its_arrays_and_revision_with_it(database_url):
    model_ids = make_zoo_db(database_url, models=2)
    load(database_url, model_ids)
    with session_factory(database_url).begin() as session:
        session.delete(session.get(Model, model_ids[0]))
    with session_factory(database_url).begin() as session:
        for table in (StoredSearchArrays, PredictionRevision):
            owners = session.scalars(select(table.model_id)).all()
            assert sorted(set(owners)) == [model_ids[1]]


def test_a_write_committed_while_arrays_are_derived_makes_them_not_current(database_url):
    """The search reads a model's chunks; before it stores what it derived, a worker stores new
    chunks of the model and commits. What the search stored must not be served afterwards."""
    model_ids = make_zoo_db(database_url, models=1)
    engine = session_factory(database_url).kw["bind"]  # the engine the sessions use
    racing = {"armed": True}

    def write_after_the_chunks_are_read(_conn, _cursor, statement, *_args) -> None:
        if racing["armed"] and "FROM prediction_chunks" in statement:
            racing["armed"] = False
            with session_factory(database_url).begin() as session:  # another connection
                write_model(session, get_dataset(session, "val"), "m0", seed=77)

    event.listen(engine, "after_cursor_execute", write_after_the_chunks_are_read)
    try:
        raced = load(database_url, model_ids)
    finally:
        event.remove(engine, "after_cursor_execute", write_after_the_chunks_are_read)
    assert not racing["armed"]
    after = load(database_url, model_ids)
    assert after.derived == tuple(model_ids)
    assert_as_the_chunks_give(database_url, after, model_ids, MAX_PROBABILITY)
    assert not np.array_equal(after.confidence, raced.confidence)


# ----- the migration ----------------------------------------------------------------------------
def test_the_migration_adds_both_tables_and_takes_them_away(database_url):
    ensure_schema(database_url)
    config = alembic_config(database_url)
    tables = ("search_arrays", "prediction_revisions")

    def present() -> set[str]:
        with engine_for(database_url).connect() as connection:
            return set(tables) & set(inspect(connection).get_table_names())

    assert present() == set(tables)
    command.downgrade(config, "0011")
    assert present() == set()
    command.upgrade(config, head_revision())
    assert present() == set(tables)
    model_ids = make_zoo_db(database_url, models=1)
    assert load(database_url, model_ids).derived == tuple(model_ids)
    with session_factory(database_url).begin() as session:
        assert session.scalar(select(func.count()).select_from(StoredSearchArrays)) == 1
