"""A sweep whose workers leave CPUs free computes its saver search's pairs as Ray tasks there,
and stores exactly the rows an in-process search stores."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from db.models import BestSaver, PairResult
from db.session import session_factory
from tests.factories import saverzoo
from tests.search.test_ray_pairs import stored_rows

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_sweep_with_spare_cpus_searches_on_ray_and_stores_the_in_process_rows(
    sweep_dataset, use_database, tmp_path
):
    log = tmp_path / "sweep.log"
    swept = saverzoo(
        "sweep",
        "submit",
        "--models",
        "seeded-*",
        "--dataset",
        "tiny",
        "--wait",
        "--batch-size",
        "4",
        "--workers",
        "1",  # of the embedded Ray's two CPUs: one left for the search
        "--log-file",
        str(log),
    )
    assert swept.exit_code == 0, swept.output
    assert "computes its pairs as Ray tasks" in log.read_text()
    by_sweep = stored_rows(use_database, "tiny")
    assert by_sweep["pairs"] and by_sweep["best"]

    with session_factory(use_database).begin() as session:
        session.execute(delete(BestSaver))
        session.execute(delete(PairResult))
    refreshed = saverzoo("savers", "refresh", "--dataset", "tiny")
    assert refreshed.exit_code == 0, refreshed.output
    assert stored_rows(use_database, "tiny") == by_sweep
