"""In-process evaluation (``saverzoo evaluate``): every model on every shard of a dataset in this
process, with the same units, chunks and completion as a sweep's workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product

from sqlalchemy.orm import sessionmaker

from db.queries import dataset_shards, get_dataset
from orchestrator.sweeps.completion import models_evaluated, store_throughput
from workers.evaluate import EvalOptions, device_type
from workers.identity import register_all
from workers.report import Throughput
from workers.spec import ModelLoadError, ModelSpec
from workers.unit import UnitRunner, model_memory_budget


@dataclass
class EvaluationSummary:
    dataset: str
    evaluated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> why it was not evaluated
    samples: int = 0
    undecodable: int = 0


def evaluate_dataset(
    sessions: sessionmaker,
    dataset_name: str,
    specs: Sequence[ModelSpec],
    *,
    options: EvalOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationSummary:
    """Evaluate ``specs`` on every shard of the dataset; store chunks shard by shard.

    Models run in bundles that fit the worker's model memory (a sweep worker's budget: a share
    of the GPU's memory, or a fixed amount on the CPU), each bundle over every shard; a model
    larger than the budget runs alone. A model that fails to load or to run is named in the
    summary and the others finish; a model that failed part-way is not complete, so the search
    leaves it out.
    """
    options = options or EvalOptions()
    summary = EvaluationSummary(dataset_name)
    runner = UnitRunner(sessions, options, model_bytes=model_memory_budget(options))
    described, sizes = [], []
    for spec in specs:
        try:
            model = runner.load(spec)
        except ModelLoadError as error:
            summary.failed[spec.name] = str(error)
            continue
        described.append((model.spec, model.config, model.profile))
        sizes.append((model.spec, model.nbytes))
    if not described:
        return summary
    with sessions.begin() as session:
        shards = dataset_shards(session, get_dataset(session, dataset_name))
        ids, cost_changed = register_all(session, described)
    bundles = bundles_within(sizes, runner.model_bytes)
    measured: dict[str, Throughput] = {}
    read: dict[int, tuple[int, int]] = {}  # per shard: samples, undecodable (every bundle alike)
    steps = len(bundles) * len(shards)
    for step, (bundle, shard) in enumerate(product(bundles, shards), start=1):
        running = [spec for spec in bundle if spec.name not in summary.failed]
        if running:
            report = runner.run(dataset_name, shard, running, ids, skip_done=False)
            summary.failed.update(report.failed)
            for name, throughput in report.throughput.items():
                measured.setdefault(name, Throughput()).add(throughput)
            if report.samples:
                read[shard.index] = (report.samples, report.undecodable)
        if progress:
            progress(step, steps)
    summary.samples = sum(samples for samples, _ in read.values())
    summary.undecodable = sum(undecodable for _, undecodable in read.values())
    with sessions.begin() as session:
        store_throughput(session, ids, measured, device_type(options.device))
        models_evaluated(session, dataset_name, list(ids.values()), cost_changed)
    summary.evaluated = [spec.name for spec, _ in sizes if spec.name not in summary.failed]
    return summary


def bundles_within(sizes: Sequence[tuple[ModelSpec, int]], budget: int) -> list[list[ModelSpec]]:
    """Consecutive models grouped while their bytes fit ``budget`` (one too large runs alone)."""
    bundles: list[list[ModelSpec]] = []
    used = 0
    for spec, size in sizes:
        if not bundles or used + size > budget:
            bundles.append([])
            used = 0
        bundles[-1].append(spec)
        used += size
    return bundles
