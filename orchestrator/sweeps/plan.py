"""Sweep planning: which models, which (model, shard) work is missing, and how to group it.

A work unit is a bundle of models on one shard: the shard is read and decoded once for the whole
bundle. Bundles hold models of one data config (they share the preprocessed batch) whose summed
cost stays within a budget, so small models travel together and a large model runs alone; units
are handed out largest first so that the slowest work starts early and fast and slow workers
finish together. Done work is whatever prediction chunks exist: planning again after a crash
plans exactly what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from db.refs import ShardRef

DEFAULT_BUNDLE_GMACS = 8.0  # about two resnet50s per decode of a shard


@dataclass(frozen=True)
class PlannedModel:
    name: str
    config_key: str  # workers.preprocess_key.preprocessing_key: equal keys share preprocessing
    gmacs: float


@dataclass(frozen=True)
class Unit:
    models: tuple[str, ...]
    shard: int
    gmacs: float  # compute of the unit: the models' GMACs times the shard's samples


def bundles(
    models: Sequence[PlannedModel], budget_gmacs: float = DEFAULT_BUNDLE_GMACS
) -> list[tuple[PlannedModel, ...]]:
    """Models of one data config packed first-fit by decreasing cost into bundles of at most
    ``budget_gmacs`` (a model dearer than the budget is a bundle of its own)."""
    by_config: dict[str, list[PlannedModel]] = {}
    for model in models:
        by_config.setdefault(model.config_key, []).append(model)
    packed: list[tuple[PlannedModel, ...]] = []
    for group in by_config.values():
        bins: list[list[PlannedModel]] = []
        for model in sorted(group, key=lambda m: (-m.gmacs, m.name)):
            target = next(
                (b for b in bins if sum(m.gmacs for m in b) + model.gmacs <= budget_gmacs), None
            )
            if target is None:
                bins.append([model])
            else:
                target.append(model)
        packed.extend(tuple(b) for b in bins)
    return packed


def plan_units(
    models: Sequence[PlannedModel],
    shards: Sequence[ShardRef],
    done: Iterable[tuple[str, int]],
    budget_gmacs: float = DEFAULT_BUNDLE_GMACS,
) -> list[Unit]:
    """Every missing (model, shard) in exactly one unit, largest unit first."""
    done = set(done)
    units = []
    for bundle in bundles(models, budget_gmacs):
        for shard in shards:
            missing = [m for m in bundle if (m.name, shard.index) not in done]
            if missing:
                units.append(
                    Unit(
                        tuple(m.name for m in missing),
                        shard.index,
                        sum(m.gmacs for m in missing) * shard.samples,
                    )
                )
    return sorted(units, key=lambda u: (-u.gmacs, u.shard, u.models))
