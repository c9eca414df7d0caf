"""In-process evaluation (``saverzoo evaluate``): every model on every shard of a dataset in this
process, with the same units, chunks and completion as a sweep's workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import sessionmaker

from db.queries import dataset_shards, get_dataset
from orchestrator.sweeps.completion import models_evaluated, store_throughput
from workers.evaluate import EvalOptions, device_type
from workers.identity import register_all
from workers.report import Throughput
from workers.spec import ModelLoadError, ModelSpec
from workers.unit import UnitRunner


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

    A model that fails to load or to run is named in the summary and the others finish; a
    model that failed part-way is not complete, so the search leaves it out.
    """
    options = options or EvalOptions()
    summary = EvaluationSummary(dataset_name)
    runner = UnitRunner(sessions, options)
    loaded = []
    for spec in specs:
        try:
            loaded.append(runner.load(spec))
        except ModelLoadError as error:
            summary.failed[spec.name] = str(error)
    if not loaded:
        return summary
    with sessions.begin() as session:
        shards = dataset_shards(session, get_dataset(session, dataset_name))
        ids, cost_changed = register_all(session, [(m.spec, m.config, m.profile) for m in loaded])
    running = [model.spec for model in loaded]
    measured: dict[str, Throughput] = {}
    for done, shard in enumerate(shards, start=1):
        report = runner.run(dataset_name, shard, running, ids, skip_done=False)
        summary.failed.update(report.failed)
        running = [spec for spec in running if spec.name not in summary.failed]
        for name, throughput in report.throughput.items():
            measured.setdefault(name, Throughput()).add(throughput)
        summary.samples += report.samples
        summary.undecodable += report.undecodable
        if progress:
            progress(done, len(shards))
    with sessions.begin() as session:
        store_throughput(session, ids, measured, device_type(options.device))
        models_evaluated(session, dataset_name, list(ids.values()), cost_changed)
    summary.evaluated = [spec.name for spec in running]
    return summary
