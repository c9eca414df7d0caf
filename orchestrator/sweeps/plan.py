"""Sweep planning: which models, which (model, shard) work is missing, and how to group it.

A work unit is a bundle of models on one shard: the shard is read and decoded once for the whole
bundle, and resized once per data config in it. Bundles are packed by modelled time: models in
the order of their data config, each bundle filled until its forward passes over a shard would
take ``budget_seconds`` on an H200, so small models travel together, a large model runs alone
and a bundle spans few data configs. When the number of workers is known, a bundle whose loads
are dear (small models: building one costs more than a few of its forward passes) also stops
growing at half a worker's share of the sweep, so it never has to be split over two workers
that would each load all of its models. (With ``budget_gmacs`` instead, the older rule: models
of one data config whose GMACs sum to the budget.) Done work is whatever prediction chunks
exist: planning again after a crash plans exactly what is missing.

Every time here is modelled, for one NVIDIA H200: only the relative sizes of units, bundles and
loads matter, to balance the workers (``orchestrator.sweeps.queue``).
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
# A unit's fixed cost: its shard decoded once (nvJPEG, about 10,000 images/s), then resized and
# cropped once per data config in the unit (one image at a time, as measured).
H200_DECODE_SECONDS_PER_IMAGE = 100e-6
H200_RESIZE_SECONDS_PER_IMAGE = 80e-6
# Loading a model: its fp32 checkpoint at 2 GB/s, plus building the module.
LOAD_BYTES_PER_S = 2e9
LOAD_FIXED_S = 0.5
DEFAULT_PARAMS_M = 25.0  # a model whose size is not recorded: a resnet50
# A bundle is dear to split when loading its models costs more than this share of its work;
# such a bundle is kept to DEAR_BUNDLE_SHARE of one worker's share of the sweep.
DEAR_LOAD_SHARE = 0.02
DEAR_BUNDLE_SHARE = 0.5


@dataclass(frozen=True)
class PlannedModel:
    name: str
    config_key: str  # workers.preprocess_key.preprocessing_key: equal keys share preprocessing
    gmacs: float
    params_m: float | None = None  # millions of parameters: what loading it costs


@dataclass(frozen=True)
class Unit:
    models: tuple[str, ...]
    shard: int
    gmacs: float  # compute of the unit: the models' GMACs times the shard's samples
    seconds: float  # its modelled H200 time (unit_seconds): what ranks and balances units


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


def unit_seconds(gmacs: Iterable[float], configs: int, images: int = IMAGES_PER_SHARD) -> float:
    """A unit's modelled H200 time: one decode of its shard, a resize per data config and the
    forward passes. Without the fixed part a worker of many small units would be given as
    much forward time as one of few large units and finish a decode per unit later."""
    fixed = images * (H200_DECODE_SECONDS_PER_IMAGE + configs * H200_RESIZE_SECONDS_PER_IMAGE)
    return fixed + modelled_seconds(gmacs, images)


def load_seconds(params_m: float | None) -> float:
    """The modelled time to load a model of ``params_m`` million parameters."""
    params = DEFAULT_PARAMS_M if params_m is None else params_m
    return params * 1e6 * 4 / LOAD_BYTES_PER_S + LOAD_FIXED_S


def worker_share(models: Sequence[PlannedModel], shards: int, workers: int) -> float:
    """One worker's part of the modelled time of a sweep of ``models`` over ``shards`` shards of
    ``IMAGES_PER_SHARD`` images: every forward pass, a decode per model and shard at most, and
    one load of each model."""
    passes = sum(unit_seconds([m.gmacs], 1) for m in models) * shards
    return (passes + sum(load_seconds(m.params_m) for m in models)) / max(1, workers)


def bundles(
    models: Sequence[PlannedModel],
    budget_gmacs: float | None = None,
    budget_seconds: float = DEFAULT_BUNDLE_SECONDS,
    shards: int = 1,
    workers: int | None = None,
) -> list[tuple[PlannedModel, ...]]:
    """Models packed into bundles: by modelled time across data configs (dear bundles kept to
    half a worker's share when ``workers`` is known), or with ``budget_gmacs`` by GMACs within
    one data config."""
    if budget_gmacs is not None:
        return _by_gmacs(models, budget_gmacs)
    dear_limit = (
        DEAR_BUNDLE_SHARE * worker_share(models, shards, workers) if workers else float("inf")
    )
    return _by_time(models, budget_seconds, shards, dear_limit)


def _by_time(
    models: Sequence[PlannedModel], budget_s: float, shards: int, dear_limit: float
) -> list[tuple[PlannedModel, ...]]:
    """Next fit in data-config order: each bundle is filled until the next model would take it
    past ``budget_s`` a shard, or a dear bundle past ``dear_limit`` over all ``shards`` (a
    model dearer than the budget alone is a bundle of its own)."""
    packed: list[tuple[PlannedModel, ...]] = []
    current: list[PlannedModel] = []
    seconds = loads = 0.0
    for model in sorted(models, key=lambda m: (m.config_key, -m.gmacs, m.name)):
        cost, load = forward_seconds(model), load_seconds(model.params_m)
        if current:
            work = (seconds + cost) * shards
            dear = loads + load > DEAR_LOAD_SHARE * work
            if seconds + cost > budget_s or (dear and work + loads + load > dear_limit):
                packed.append(tuple(current))
                current, seconds, loads = [], 0.0, 0.0
        current.append(model)
        seconds += cost
        loads += load
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
    workers: int | None = None,
) -> list[Unit]:
    """Every missing (model, shard) in exactly one unit, largest unit first; ``workers``, the
    number expected, keeps dear bundles small enough for one worker."""
    done = set(done)
    units = []
    for bundle in bundles(models, budget_gmacs, budget_seconds, len(shards), workers):
        for shard in shards:
            missing = [m for m in bundle if (m.name, shard.index) not in done]
            if missing:
                units.append(
                    Unit(
                        tuple(m.name for m in missing),
                        shard.index,
                        sum(m.gmacs for m in missing) * shard.samples,
                        unit_seconds(
                            (m.gmacs for m in missing),
                            len({m.config_key for m in missing}),
                            shard.samples,
                        ),
                    )
                )
    return sorted(units, key=lambda u: (-u.seconds, u.shard, u.models))
