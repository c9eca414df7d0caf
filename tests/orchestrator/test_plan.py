"""Sweep planning: every missing (model, shard) in exactly one unit, grouped to keep a GPU busy."""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.sweeps.plan import (
    PlannedModel,
    ShardRef,
    bundles,
    forward_seconds,
    load_seconds,
    plan_units,
    worker_share,
)
from workers.preprocess_key import preprocessing_key

SHARDS = [ShardRef(i, f"s3://b/s-{i}.tar", 1000) for i in range(4)]


def model(name: str, gmacs: float, config: str = "224-bicubic") -> PlannedModel:
    return PlannedModel(name, preprocessing_key({"config": config}), gmacs)


def test_a_data_config_as_timm_resolves_it_and_as_stored_has_one_preprocessing_key():
    resolved = {
        "input_size": (3, 224, 224),
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "crop_mode": "center",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    }
    stored = json.loads(json.dumps(resolved))  # the database's JSON column: tuples read as lists

    assert preprocessing_key(dict(reversed(stored.items()))) == preprocessing_key(resolved)
    assert preprocessing_key({**resolved, "input_size": (3, 288, 288)}) != preprocessing_key(
        resolved
    )


def test_small_models_of_one_config_share_a_bundle_and_a_large_model_runs_alone():
    zoo = [
        model("vit_large", 60.0),
        model("resnet50", 4.1),
        model("resnet18", 1.8),
        model("mobilenet", 0.2),
        model("effnet", 0.4),
    ]

    packed = [sorted(m.name for m in b) for b in bundles(zoo, budget_gmacs=8.0)]

    assert ["vit_large"] in packed
    assert ["effnet", "mobilenet", "resnet18", "resnet50"] in packed


def test_by_gmacs_models_of_different_data_configs_never_share_a_bundle():
    zoo = [model("a", 1.0, "224"), model("b", 1.0, "288"), model("c", 1.0, "224")]

    packed = [sorted(m.name for m in b) for b in bundles(zoo, budget_gmacs=8.0)]

    assert sorted(packed) == [["a", "c"], ["b"]]


def test_by_time_small_models_of_several_configs_share_a_bundle_and_a_large_one_runs_alone():
    zoo = [
        model("vit_large", 60.0, "224"),
        model("resnet50", 4.1, "224"),
        model("effnet_b3", 1.8, "300"),
        model("mobilenet", 0.06, "224"),
    ]

    packed = [sorted(m.name for m in b) for b in bundles(zoo, budget_seconds=0.2)]

    # 1,000 images: vit_large 0.39 s alone; the rest 0.05 + 0.02 + 0.03 s together
    assert sorted(packed) == [["effnet_b3", "mobilenet", "resnet50"], ["vit_large"]]


def test_a_bundle_by_time_is_filled_in_data_config_order_so_it_spans_few_configs():
    zoo = [model(f"m{i}", 1.0, f"c{i % 3}") for i in range(12)]  # 0.0287 s a model

    packed = bundles(zoo, budget_seconds=0.12)  # four models a bundle

    assert [len(b) for b in packed] == [4, 4, 4]
    assert all(len({m.config_key for m in b}) == 1 for b in packed)


def test_for_many_workers_a_bundle_of_small_models_stops_at_half_a_workers_share():
    """Loading a small model costs more than a few of its forward passes: a bundle of them
    split over two workers would load every model twice, so it is kept small enough for one."""
    zoo = [model(f"tiny{i}", 0.05) for i in range(200)] + [model("giant", 900.0)]

    few = bundles(zoo, budget_seconds=3.0, shards=50, workers=4)
    many = bundles(zoo, budget_seconds=3.0, shards=50, workers=256)

    assert len(few) == len(bundles(zoo, budget_seconds=3.0))  # the budget alone decides
    assert len(many) > 2 * len(few)
    share = worker_share(zoo, 50, 256)
    for bundle in many:
        if len(bundle) > 1:
            work = 50 * sum(forward_seconds(m) for m in bundle)
            assert work + sum(load_seconds(m.params_m) for m in bundle) <= share / 2 + 1.0
    assert ("giant",) in [tuple(m.name for m in b) for b in many]  # alone, split by the queue


def test_done_chunks_are_not_planned_and_units_come_largest_first():
    zoo = [model("big", 20.0), model("small", 1.0, "other")]
    done = {("big", 0), ("small", 1), ("small", 2)}

    units = plan_units(zoo, SHARDS, done, budget_seconds=0.1)  # big (0.14 s) alone

    planned = Counter((name, u.shard) for u in units for name in u.models)
    assert set(planned) == {(m.name, s.index) for m in zoo for s in SHARDS} - done
    assert [u.gmacs for u in units] == sorted((u.gmacs for u in units), reverse=True)
    assert units[0].models == ("big",) and units[0].gmacs == 20.0 * 1000


names = st.sampled_from([f"m{i}" for i in range(8)])


@given(
    costs=st.dictionaries(names, st.floats(0.01, 30.0), min_size=1),
    configs=st.dictionaries(names, st.sampled_from(["x", "y", "z"])),
    done=st.sets(st.tuples(names, st.integers(0, 3))),
    seconds=st.floats(0.01, 2.0),
)
def test_by_time_every_missing_model_shard_is_planned_exactly_once(costs, configs, done, seconds):
    zoo = [model(name, gmacs, configs.get(name, "x")) for name, gmacs in costs.items()]

    units = plan_units(zoo, SHARDS, done, budget_seconds=seconds)

    planned = Counter((name, u.shard) for u in units for name in u.models)
    assert all(count == 1 for count in planned.values())
    assert set(planned) == {(m.name, s.index) for m in zoo for s in SHARDS} - done
    by_name = {m.name: m for m in zoo}
    for unit in units:  # a unit only exceeds the budget alone
        time = sum(forward_seconds(by_name[n]) for n in unit.models)
        assert len(unit.models) == 1 or time <= seconds + 1e-9


@given(
    costs=st.dictionaries(names, st.floats(0.01, 30.0), min_size=1),
    configs=st.dictionaries(names, st.sampled_from(["x", "y", "z"])),
    done=st.sets(st.tuples(names, st.integers(0, 3))),
    budget=st.floats(0.5, 40.0),
)
def test_by_gmacs_every_missing_model_shard_is_planned_exactly_once(costs, configs, done, budget):
    zoo = [model(name, gmacs, configs.get(name, "x")) for name, gmacs in costs.items()]

    units = plan_units(zoo, SHARDS, done, budget)

    planned = Counter((name, u.shard) for u in units for name in u.models)
    assert all(count == 1 for count in planned.values())
    assert set(planned) == {(m.name, s.index) for m in zoo for s in SHARDS} - done
    for unit in units:  # a unit holds one data config, and only exceeds the budget alone
        assert len({configs.get(name, "x") for name in unit.models}) == 1
        assert len(unit.models) == 1 or sum(costs[n] for n in unit.models) <= budget + 1e-9
