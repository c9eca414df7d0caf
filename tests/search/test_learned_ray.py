"""The learned signal's pairs as Ray tasks: the same stored rows as the in-process search's, its
held-out values searched on the held-out scores there too."""

from __future__ import annotations

import pytest

from db.queries import get_dataset
from db.schema import upgrade
from db.session import session_factory
from orchestrator.ingest.records_import import import_records
from search.service import SaverSearch, add_signal
from tests.search.test_learned import NAMES, topk_records
from tests.search.test_ray_pairs import ray_cluster, stored_rows  # noqa: F401  (a fixture)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_search_stores_the_learned_rows_of_the_in_process_search(
    database_url,
    tmp_path,
    ray_cluster,  # noqa: F811
):
    from search.ray_pairs import RayPairs

    upgrade(database_url)
    sessions = session_factory(database_url)
    for dataset, search, steps in (
        ("here", SaverSearch(), [NAMES]),
        ("ray", SaverSearch(pairs=RayPairs()), [NAMES[:2], NAMES]),
    ):
        for step, names in enumerate(steps):
            directory, _, _ = topk_records(tmp_path / f"{dataset}{step}", 0, names=names)
            with sessions.begin() as session:
                import_records(
                    session,
                    directory,
                    dataset,
                    budgets=[0.0, 1.0],
                    holdout_fraction=0.5,
                    search=search,
                )
            if step == 0:
                with sessions.begin() as session:
                    add_signal(session, get_dataset(session, dataset), "learned", search)
    here, ray = stored_rows(database_url, "here"), stored_rows(database_url, "ray")
    assert {row.confidence for row in ray["pairs"]} == {"max", "learned"}
    assert here == ray
