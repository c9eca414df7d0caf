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
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import DatasetShard, Model, PredictionChunk
from db.queries import get_dataset, keys_digest, store_chunk
from db.refs import ShardRef
from workers.evaluate import (
    EvalOptions,
    LoadedModel,
    ShardEvaluator,
    ShardResult,
    Throughput,
    device_type,
)
from workers.spec import ModelLoadError, ModelSpec

MAX_CACHED_MODELS = 16  # loaded models kept between units (a worker's next unit often reuses them)


@dataclass
class UnitReport:
    """What a unit did: chunks stored, models that failed (and why), measurements."""

    shard: int
    stored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # their chunk existed already
    failed: dict[str, str] = field(default_factory=dict)
    samples: int = 0
    undecodable: int = 0
    throughput: dict[str, Throughput] = field(default_factory=dict)
    device_type: str = "cpu"  # what the throughput was measured on
    seconds: float = 0.0  # wall time of the unit in the worker: load, read, evaluate, store


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
                done = _stored_models(session, dataset_name, shard.index, list(model_ids.values()))
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
            store_shard_result(session, dataset_name, shard.index, result, model_ids)
        report.stored = list(result.predictions)
        report.samples = len(result.keys)
        report.undecodable = len(result.failures)
        report.seconds = time.perf_counter() - started
        return report


def _stored_models(session: Session, dataset_name: str, shard: int, ids: list[int]) -> set[int]:
    dataset = get_dataset(session, dataset_name)
    return set(
        session.scalars(
            select(PredictionChunk.model_id).where(
                PredictionChunk.dataset_id == dataset.id,
                PredictionChunk.shard_index == shard,
                PredictionChunk.model_id.in_(ids),
            )
        )
    )


def store_shard_result(
    session: Session,
    dataset_name: str,
    index: int,
    result: ShardResult,
    model_ids: dict[str, int],
) -> None:
    """Every model's chunk of the shard, and the shard's undecodable samples."""
    dataset = get_dataset(session, dataset_name)
    digest = keys_digest(result.keys)
    for name, predictions in result.predictions.items():
        model = session.get(Model, model_ids[name])
        assert model is not None  # the unit's models are registered before it runs
        store_chunk(
            session,
            model=model,
            dataset=dataset,
            shard_index=index,
            keys_digest_=digest,
            topk_classes=predictions.classes,
            topk_probs=predictions.probs,
        )
    shard = session.scalars(
        select(DatasetShard).where(
            DatasetShard.dataset_id == dataset.id, DatasetShard.shard_index == index
        )
    ).one()
    shard.failed_samples = dict(result.failures.reasons)
