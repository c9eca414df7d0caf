"""The cluster simulation: the real driver, database and Ray over 16 stand-in GPU workers stores
every chunk exactly once, loses no unit and loads each model on few workers (counts, not times)."""

from __future__ import annotations

import json
import logging

import pytest

from bench.standin import NodeReads, StandInWorker
from bench.standin_pool import SimPool
from bench.sweep_costs import fit_anchors, pick, read_zoo
from bench.sweep_scale import driver_class, main, populate
from cluster.settings import Settings
from db.schema import ensure_schema
from db.session import session_factory
from orchestrator.sweeps.pool import UnitFailed, WorkerLost
from orchestrator.sweeps.store import SweepOptions

# 40 models in bundles of 0.05 s: more bundles than workers, so a model needs few loads. In real
# time (a few seconds), so that a unit's modelled time decides how long it takes, not the
# stand-in's own milliseconds: the queue judges when each worker will end from its units' pace.
SIXTEEN_GPUS = [
    "--gpus",
    "16",
    "--gpus-per-node",
    "8",
    "--models",
    "40",
    "--shards",
    "6",
    "--time-scale",
    "1.0",
    "--bundle-seconds",
    "0.05",
]


@pytest.mark.ray
@pytest.mark.slow
def test_sixteen_stand_in_ray_workers_store_every_chunk_exactly_once(tmp_path):
    out = tmp_path / "sim.json"

    figures = main([*SIXTEEN_GPUS, "--pool", "ray", "--json", str(out)])

    assert figures == json.loads(out.read_text())
    assert figures["state"] == "done" and figures["real_ray_actors"] == 16
    assert figures["chunks_exactly_once"] and figures["chunks"] == 40 * 6
    # A bundle is held by few of the 16 workers (the tail may add a holder or two).
    assert figures["model_loads_per_model"] <= 1.5 and figures["model_loads_max"] <= 4
    assert figures["shard_reads_per_node"] <= 1.0  # no node read a shard twice


@pytest.mark.slow
def test_the_in_process_pool_runs_the_same_driver_to_the_same_rows(tmp_path):
    figures = main([*SIXTEEN_GPUS, "--pool", "sim"])

    assert figures["state"] == "done" and figures["real_ray_actors"] == 0
    assert figures["chunks_exactly_once"] and figures["chunks"] == 40 * 6
    assert figures["model_loads_per_model"] <= 1.5 and figures["model_loads_max"] <= 4
    assert figures["shard_reads_per_node"] <= 1.0
    # The last unit's models are searched after it lands: the answers come after the makespan.
    assert figures["answers_s"] >= figures["makespan_s"] > 0
    assert figures["answers_over_makespan"] >= 1.0


def test_the_cost_model_is_fitted_to_the_anchors_and_a_large_model_costs_more():
    costs = fit_anchors()
    zoo = {m.name.split(".")[0]: m for m in read_zoo()}
    small, large = zoo["mobilenetv3_small_050"], zoo["vit_large_patch16_224"]

    assert 0 < costs.seconds_per_image < 50e-6 and costs.seconds_per_gmac > 0
    assert costs.forward_s(large, 1000) > 10 * costs.forward_s(small, 1000)
    assert costs.load_s(large) > costs.load_s(small)
    assert len(pick(read_zoo(), 1266)) == 1266


def test_a_stand_in_keeps_its_models_while_they_fit_and_reads_a_shard_once_per_node(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    ensure_schema(url)
    zoo = {m.name: m for m in pick(read_zoo(), 10)}
    reads = NodeReads(tmp_path / "node-0")
    one, two = (
        StandInWorker(session_factory(url), zoo, fit_anchors(), 0.0, reads) for _ in range(2)
    )
    model = next(iter(zoo.values()))

    assert one._load(model) > 0 and one._load(model) == 0  # loaded once, then kept
    assert one._read(3) > 0 and two._read(3) == 0  # the node read shard 3 once


def test_a_retried_unit_and_a_lost_worker_are_warnings_naming_the_sweep_and_the_unit(
    tmp_path, caplog
):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    ensure_schema(url)
    sessions = session_factory(url)
    zoo = pick(read_zoo(), 4)
    options = SweepOptions(random_weights=True, bundle_seconds=0.05)
    sweep_id = populate(sessions, zoo, 3, options)

    class FlakyPool(SimPool):
        """The first result a failure inside its unit, the second a lost worker."""

        results = 0

        def result(self, pending):
            self.results += 1
            if self.results == 1:
                raise UnitFailed("OSError: shard 0 unreadable")
            if self.results == 2:
                raise WorkerLost("worker lost (killed)")
            return super().result(pending)

    by_name = {m.name: m for m in zoo}
    pool = FlakyPool(
        2,
        lambda i: StandInWorker(
            sessions, by_name, fit_anchors(), 0.0, NodeReads(tmp_path / f"node-{i}")
        ),
    )
    caplog.set_level(logging.INFO, logger="orchestrator.sweeps.driver")

    state = driver_class(search_tail=False)(
        sessions, Settings(database_url=url), sweep_id, pool=pool
    ).run()

    assert state == "done"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    retried = next(r for r in warnings if "shard 0 unreadable" in r.getMessage())
    lost = next(r for r in warnings if "lost" in r.getMessage())
    for record in (retried, lost):
        assert record.sweep_id == sweep_id and record.unit is not None
        assert record.getMessage().startswith(f"sweep {sweep_id} unit {record.unit}: ")
    assert "retried" in retried.getMessage()


def test_a_sweep_whose_search_fails_ends_done_with_the_searchs_error_shown(tmp_path):
    """The stand-in workers store each model's top-1 alone; a dataset that keeps the margin
    signal cannot be searched on it. The units are done: the sweep ends, its search error kept
    where `sweep status` shows it (the background search's and the final one's alike)."""
    from db.models import Dataset, Sweep
    from orchestrator.sweeps.store import status

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    ensure_schema(url)
    sessions = session_factory(url)
    zoo = pick(read_zoo(), 3)
    sweep_id = populate(sessions, zoo, 2, SweepOptions(random_weights=True, bundle_seconds=0.05))
    with sessions.begin() as session:
        dataset = session.get(Dataset, session.get(Sweep, sweep_id).dataset_id)
        dataset.confidence_signals = ["margin", "max"]
    by_name = {m.name: m for m in zoo}
    pool = SimPool(
        1, lambda i: StandInWorker(sessions, by_name, fit_anchors(), 0.0, NodeReads(tmp_path))
    )

    state = driver_class(search_tail=True)(
        sessions, Settings(database_url=url), sweep_id, pool=pool
    ).run()

    assert state == "done"
    with sessions.begin() as session:
        shown = status(session, sweep_id)
    assert shown["state"] == "done"
    assert shown["search_error"].startswith("InputError: model ")
    assert "has only its top-1 probability stored" in shown["search_error"]
