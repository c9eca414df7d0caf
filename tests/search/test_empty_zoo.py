"""A dataset no model has completed yet is a zoo of none: searching it stores nothing, fails
nothing."""

from __future__ import annotations

from sqlalchemy import delete

from db.models import PredictionChunk
from db.queries import get_dataset
from db.schema import ensure_schema
from db.session import session_factory
from orchestrator.ingest.records_import import import_records
from search.service import SaverSearch
from tests.factories import records_dir, row_counts, small_zoo


def test_refreshing_a_dataset_without_complete_models_computes_nothing(database_url, tmp_path):
    ensure_schema(database_url)
    sessions = session_factory(database_url)
    with sessions.begin() as session:
        import_records(
            session,
            records_dir(tmp_path, small_zoo()),
            "val",
            budgets=[0.0],
            holdout_fraction=0.5,
            search=SaverSearch(),
        )
        session.execute(delete(PredictionChunk))
    with sessions.begin() as session:
        summary = SaverSearch().refresh(session, get_dataset(session, "val"))
    assert (summary.models, summary.pairs_computed, summary.rows_written) == (0, 0, 0)
    assert row_counts(database_url)["prediction_chunks"] == 0
