"""Reading records: what the database will store is exactly what the files say, or nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select

from cluster.validate import MAX_CLASSES
from db.models import Model
from db.queries import upsert_model
from db.schema import ensure_schema
from db.session import session_factory
from orchestrator.ingest.records_import import import_records
from search.records import RecordsError, read_records
from search.service import SaverSearch
from tests.factories import records_dir, small_zoo


def _write(directory, preds, labels, confs=None, macs=4e9, keys=None):
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "label": np.asarray(labels)[:, None],
        "preds": np.asarray(preds)[None],
        "confs": np.full(np.shape(preds), 0.5)[None] if confs is None else np.asarray(confs)[None],
    }
    if keys is not None:
        arrays["keys"] = np.asarray(keys)
    np.savez(directory / "m_test.npz", **arrays)
    (directory / "complexity_info.json").write_text(json.dumps({"m": {"macs": macs}}))
    return directory


@pytest.mark.parametrize(
    "top1", [2**40, 2**16, MAX_CLASSES, -2, np.iinfo(np.int64).min, np.iinfo(np.uint64).max]
)
def test_a_class_index_the_database_cannot_store_is_refused_not_wrapped(tmp_path, top1):
    dtype = np.uint64 if top1 > np.iinfo(np.int64).max else np.int64
    preds = np.array([[top1], [1]], dtype=dtype)

    with pytest.raises(RecordsError, match=r"preds range .* falls outside 0\.\.32766"):
        read_records(_write(tmp_path, preds, [0, 1]))


def test_the_largest_storable_class_is_read_as_it_is(tmp_path):
    records = read_records(_write(tmp_path, [[MAX_CLASSES - 1], [0]], [MAX_CLASSES - 1, 0]))

    assert records.models[0].topk_classes[:, 0].tolist() == [MAX_CLASSES - 1, 0]
    assert records.labels.tolist() == [MAX_CLASSES - 1, 0]


def test_minus_one_is_no_prediction_only_with_probability_zero(tmp_path):
    preds = [[3, -1], [-1, -1]]
    kept = read_records(_write(tmp_path / "a", preds, [3, 1], [[0.9, 0.0], [0.0, 0.0]]))
    assert kept.models[0].topk_classes.tolist() == preds

    with pytest.raises(RecordsError, match="preds range -1"):
        read_records(_write(tmp_path / "b", preds, [3, 1], [[0.9, 0.1], [0.0, 0.0]]))


def test_repeated_sample_keys_are_refused(tmp_path):
    with pytest.raises(RecordsError, match="'k1' appears more than once"):
        read_records(_write(tmp_path, [[0], [1], [2]], [0, 1, 2], keys=["k1", "k2", "k1"]))


def test_records_of_a_timm_model_at_another_cost_leave_its_cost_alone(database_url, tmp_path):
    """Records under the name of a model saverzoo measured itself, at another cost, would move its
    pairs on every dataset to a cost it does not have: they are refused, nothing is stored."""
    zoo = small_zoo(num_models=3, num_samples=200, seed=12)
    ensure_schema(database_url)
    with session_factory(database_url).begin() as session:
        upsert_model(session, name=zoo.names[2], arch="resnet50", source="timm", gmacs=4.1)

    with pytest.raises(RecordsError, match=r"a timm model of 4\.1 GMACs"):
        with session_factory(database_url).begin() as session:
            import_records(
                session,
                records_dir(tmp_path, zoo),
                "val",
                budgets=[0.0],
                holdout_fraction=0.5,
                search=SaverSearch(),
            )

    with session_factory(database_url).begin() as session:
        models = session.scalars(select(Model)).all()
        assert [(m.name, m.source, m.gmacs) for m in models] == [(zoo.names[2], "timm", 4.1)]
