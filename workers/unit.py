"""One unit of work: a bundle of models on one shard, evaluated and stored (no Ray here).

In-process evaluation (``saverzoo evaluate``) and the cluster's worker actors run units through
the same ``UnitRunner``, so a sweep stores exactly what an in-process evaluation stores. Each
unit's chunks are written in one transaction, as upserts on the chunk key: a unit that dies
part-way has stored nothing of its shard, and a unit run twice leaves one row per chunk.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy.orm import sessionmaker

from db.refs import ShardRef
from workers.evaluate import EvalOptions, LoadedModel, ShardEvaluator, device_type
from workers.report import UnitReport
from workers.spec import ModelLoadError, ModelSpec
from workers.store import store_shard_result, stored_models

MAX_CACHED_MODELS = 16  # loaded models kept between units (a worker's next unit often reuses them)


class UnitRunner:
    """Runs units for one process: keeps recently used models loaded, stores every result."""

    def __init__(self, sessions: sessionmaker, options: EvalOptions | None = None) -> None:
        self.sessions = sessions
        self.options = options or EvalOptions()
        self.loaded: OrderedDict[str, LoadedModel] = OrderedDict()

    def load(self, spec: ModelSpec) -> LoadedModel:
        """The model, loaded once per process and kept while it is among the recent ones."""
        if spec.name in self.loaded and self.loaded[spec.name].spec == spec:
            self.loaded.move_to_end(spec.name)
            return self.loaded[spec.name]
        model = LoadedModel.load(spec)
        self.loaded[spec.name] = model
        while len(self.loaded) > MAX_CACHED_MODELS:
            self.loaded.popitem(last=False)
        return model

    def run(
        self,
        dataset_name: str,
        shard: ShardRef,
        specs: Sequence[ModelSpec],
        model_ids: dict[str, int],
        *,
        skip_done: bool = True,
    ) -> UnitReport:
        """Evaluate ``specs`` on ``shard`` and store their chunks (``model_ids``: registered ids).

        With ``skip_done``, a model whose chunk of this shard exists is not run again: a unit
        retried after a crash computes only what is missing.
        """
        started = time.perf_counter()
        report = UnitReport(shard.index, device_type=device_type(self.options.device))
        if skip_done:
            with self.sessions.begin() as session:
                done = stored_models(session, dataset_name, shard.index, list(model_ids.values()))
            report.skipped = [s.name for s in specs if model_ids[s.name] in done]
            specs = [s for s in specs if model_ids[s.name] not in done]
        loaded = []
        for spec in specs:
            try:
                loaded.append(self.load(spec))
            except ModelLoadError as error:
                report.failed[spec.name] = str(error)
        if not loaded:
            return report
        with ShardEvaluator(loaded, self.options) as evaluator:
            result = evaluator.evaluate_shard(shard.url, expected_samples=shard.samples)
            report.throughput = evaluator.throughput
        report.failed.update(result.failed_models)
        with self.sessions.begin() as session:
            store_shard_result(
                session, dataset_name, shard.index, result.keys, result.predictions,
                result.failures.reasons, model_ids,
            )  # fmt: skip
        report.stored = list(result.predictions)
        report.samples = len(result.keys)
        report.undecodable = len(result.failures)
        report.seconds = time.perf_counter() - started
        return report
