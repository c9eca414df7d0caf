"""The schedule in modelled time (bench.schedule): the real planner and queue, every
unit run once, each model loaded by few workers."""

from __future__ import annotations

import pytest

from bench.schedule import schedule
from bench.sweep_costs import fit_anchors, read_zoo


def test_every_unit_runs_once_and_models_load_on_few_workers():
    zoo, costs = read_zoo(), fit_anchors()
    figures = schedule(zoo, costs, gpus=16)
    assert figures["model_loads_per_model"] <= 1.5  # counts, not times
    assert figures["shard_reads_per_node"] == 1.0  # each node reads each shard once
    assert 0 < figures["efficiency"] <= 1


def test_units_are_ranked_by_modelled_time_not_gmacs():
    """Ranked by GMACs, bundles of small models look smaller than they run: the largest-first
    order and the tail's balance go wrong, and more workers load each bundle."""
    from db.refs import ShardRef
    from orchestrator.sweeps.plan import PlannedModel, plan_units

    small = [PlannedModel(f"small{i}", "a", 0.05) for i in range(40)]  # per-image cost dominates
    large = [PlannedModel("large", "b", 60.0)]
    units = plan_units(small + large, [ShardRef(0, "", 1000)], set(), budget_seconds=0.5)
    by_seconds = [u.seconds for u in units]
    assert by_seconds == sorted(by_seconds, reverse=True)
    assert units[-1].models == ("large",)  # the shortest unit ...
    assert units[-1].gmacs == max(u.gmacs for u in units)  # ... though the most GMACs


@pytest.mark.slow
def test_on_a_large_cluster_small_model_bundles_shrink_so_models_still_load_about_once():
    """92 bundles for 256 workers would split every bundle and load its models on several."""
    zoo, costs = read_zoo(), fit_anchors()
    small, large = schedule(zoo, costs, gpus=16), schedule(zoo, costs, gpus=256)

    assert large["bundles"] > 2 * small["bundles"]
    assert large["model_loads_per_model"] <= 1.5  # counts, not times


def test_workers_that_start_one_after_another_still_run_every_unit_once():
    """A late worker's list is taken over by the early ones: nothing is left behind (the
    schedule asserts its queue is empty) and the models still load about once."""
    zoo, costs = read_zoo(), fit_anchors()
    figures = schedule(zoo[:300], costs, gpus=16, shards=10, start_spread=20.0)
    assert figures["model_loads_per_model"] <= 1.5
    assert figures["efficiency"] < figures["efficiency_from_each_worker_ready"] <= 1
