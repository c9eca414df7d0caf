"""Sweep planning: which models, which (model, shard) work is missing, and how to group it.

A work unit is a bundle of models on one shard: the shard is read and decoded once for the whole
bundle, and resized once per data config in it. Bundles are packed by modelled time: models in
the order of their data config, each bundle filled until its forward passes over a shard would
take ``budget_seconds`` on an H200, so small models travel together, a large model runs alone
and a bundle spans few data configs. (With ``budget_gmacs`` instead, the older rule: models of
one data config whose GMACs sum to the budget.) Units are handed out largest first so that the
slowest work starts early and fast and slow workers finish together. Done work is whatever
prediction chunks exist: planning again after a crash plans exactly what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from db.refs import ShardRef

DEFAULT_BUNDLE_GMACS = 8.0  # about two resnet50s per decode of a shard
# Long enough that a shard's read and decode (about 0.2 s) stay a few percent of a unit, short
# enough that a zoo of 1,266 models makes about a hundred bundles to spread over the GPUs.
DEFAULT_BUNDLE_SECONDS = 3.0
# One image's forward pass on an H200 (bf16, channels_last, batch 256), fitted to the measured
# anchors (bench/sweep_costs.py): only the relative sizes of bundles depend on it.
H200_SECONDS_PER_IMAGE = 22.6e-6
H200_SECONDS_PER_GMAC = 6.06e-6
IMAGES_PER_SHARD = 1000  # the size a bundle's time budget is reckoned on


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
    seconds: float  # the modelled H200 time of its forward passes: what ranks units


def modelled_seconds(gmacs: Iterable[float], images: int = IMAGES_PER_SHARD) -> float:
    """The modelled H200 time of forward passes of models of these GMACs over ``images``.

    Units and bundles are ranked by it, not by GMACs: a small model's time is mostly the
    per-image cost that GMACs leave out, so by GMACs a bundle of small models looks smaller
    than it runs, and the largest-first order and the tail's balance go wrong.
    """
    return sum(images * (H200_SECONDS_PER_IMAGE + H200_SECONDS_PER_GMAC * g) for g in gmacs)


def forward_seconds(model: PlannedModel, images: int = IMAGES_PER_SHARD) -> float:
    """The modelled time of ``model`` over ``images`` on an H200."""
    return modelled_seconds([model.gmacs], images)


def bundles(
    models: Sequence[PlannedModel],
    budget_gmacs: float | None = None,
    budget_seconds: float = DEFAULT_BUNDLE_SECONDS,
) -> list[tuple[PlannedModel, ...]]:
    """Models packed into bundles: by modelled time across data configs, or with
    ``budget_gmacs`` by GMACs within one data config."""
    if budget_gmacs is None:
        return _by_time(models, budget_seconds)
    return _by_gmacs(models, budget_gmacs)


def _by_time(models: Sequence[PlannedModel], budget_s: float) -> list[tuple[PlannedModel, ...]]:
    """Next fit in data-config order: each bundle is filled until the next model would take it
    past ``budget_s`` (a model dearer than the budget alone is a bundle of its own)."""
    packed: list[tuple[PlannedModel, ...]] = []
    current: list[PlannedModel] = []
    seconds = 0.0
    for model in sorted(models, key=lambda m: (m.config_key, -m.gmacs, m.name)):
        cost = forward_seconds(model)
        if current and seconds + cost > budget_s:
            packed.append(tuple(current))
            current, seconds = [], 0.0
        current.append(model)
        seconds += cost
    if current:
        packed.append(tuple(current))
    return packed


def _by_gmacs(models: Sequence[PlannedModel], budget: float) -> list[tuple[PlannedModel, ...]]:
    """Models of one data config packed first-fit by decreasing cost into bundles of at most
    ``budget`` GMACs (a model dearer than the budget is a bundle of its own)."""
    by_config: dict[str, list[PlannedModel]] = {}
    for model in models:
        by_config.setdefault(model.config_key, []).append(model)
    packed: list[tuple[PlannedModel, ...]] = []
    for group in by_config.values():
        bins: list[list[PlannedModel]] = []
        for model in sorted(group, key=lambda m: (-m.gmacs, m.name)):
            target = next(
                (b for b in bins if sum(m.gmacs for m in b) + model.gmacs <= budget), None
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
    budget_gmacs: float | None = None,
    budget_seconds: float = DEFAULT_BUNDLE_SECONDS,
) -> list[Unit]:
    """Every missing (model, shard) in exactly one unit, largest unit first."""
    done = set(done)
    units = []
    for bundle in bundles(models, budget_gmacs, budget_seconds):
        for shard in shards:
            missing = [m for m in bundle if (m.name, shard.index) not in done]
            if missing:
                units.append(
                    Unit(
                        tuple(m.name for m in missing),
                        shard.index,
                        sum(m.gmacs for m in missing) * shard.samples,
                        modelled_seconds((m.gmacs for m in missing), shard.samples),
                    )
                )
    return sorted(units, key=lambda u: (-u.seconds, u.shard, u.models))
