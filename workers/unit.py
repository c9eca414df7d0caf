"""One unit of work: a bundle of models on one shard, evaluated and stored (no Ray here).

In-process evaluation (``saverzoo evaluate``) and the cluster's worker actors run units through
the same ``UnitRunner``, so a sweep stores exactly what an in-process evaluation stores. Each
unit's chunks are written in one transaction, as upserts on the chunk key: a unit that dies
part-way has stored nothing of its shard, and a unit run twice leaves one row per chunk.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy.orm import sessionmaker

from cluster.validate import shard_scheme
from db.refs import ShardRef
from workers.evaluate import EvalOptions, LoadedModel, ShardEvaluator, device_type
from workers.report import UnitReport
from workers.shard_cache import ShardCache
from workers.shards import object_version, open_shard
from workers.spec import ModelLoadError, ModelSpec
from workers.store import store_shard_result, stored_models

CPU_MODEL_BYTES = 4 << 30  # loaded models kept between units on a CPU worker
GPU_MODEL_SHARE = 0.4  # of a GPU's memory; the rest for activations and decoded batches


def model_memory_budget(options: EvalOptions) -> int:
    """How many bytes of loaded models a worker keeps between units (a worker's next units are
    mostly of the same bundle: its models stay)."""
    if options.cuda:
        return int(options.on.total_memory() * GPU_MODEL_SHARE)
    return CPU_MODEL_BYTES


class UnitRunner:
    """Runs units for one process: keeps recently used models loaded while they fit its memory
    budget, reads shards from object storage through the node's cache, stores every result."""

    def __init__(
        self,
        sessions: sessionmaker,
        options: EvalOptions | None = None,
        cache: ShardCache | None = None,
        model_bytes: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.options = options or EvalOptions()
        self.cache = cache
        self.model_bytes = model_bytes if model_bytes is not None else CPU_MODEL_BYTES
        self.loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self.loads = 0  # models loaded by this process, for reports

    def load(self, spec: ModelSpec) -> LoadedModel:
        """The model, loaded once per process and kept while it is among the recent ones that
        fit the memory budget (a model larger than the budget is kept alone)."""
        if spec.name in self.loaded and self.loaded[spec.name].spec == spec:
            self.loaded.move_to_end(spec.name)
            return self.loaded[spec.name]
        model = LoadedModel.load(spec)
        self.loads += 1
        self.loaded[spec.name] = model
        while (
            len(self.loaded) > 1 and sum(m.nbytes for m in self.loaded.values()) > self.model_bytes
        ):
            _, evicted = self.loaded.popitem(last=False)
            evicted.unload()
        return model

    def _loaded_bytes(self) -> int:
        return sum(model.nbytes for model in self.loaded.values())

    def local_url(self, shard: ShardRef) -> str:
        """Where to read ``shard``: the node's cached copy of an object, else its own URL."""
        if self.cache is None or shard_scheme(shard.url) != "s3":
            return shard.url
        return str(self.cache.local(shard.url, object_version(shard.url), open_shard))

    def prefetch(self, shard: ShardRef | None) -> None:
        """Copy the next unit's shard into the node's cache while this unit runs (a failure is
        the next unit's to report)."""
        if shard is None or self.cache is None or shard_scheme(shard.url) != "s3":
            return

        def copy() -> None:
            with contextlib.suppress(Exception):
                self.local_url(shard)

        threading.Thread(target=copy, name=f"prefetch-{shard.index}", daemon=True).start()

    def run(
        self,
        dataset_name: str,
        shard: ShardRef,
        specs: Sequence[ModelSpec],
        model_ids: dict[str, int],
        *,
        skip_done: bool = True,
        prefetch: ShardRef | None = None,
    ) -> UnitReport:
        """Evaluate ``specs`` on ``shard`` and store their chunks (``model_ids``: registered ids).

        With ``skip_done``, a model whose chunk of this shard exists is not run again: a unit
        retried after a crash computes only what is missing. ``prefetch``: the shard of the
        worker's next unit, copied to the node's cache meanwhile.
        """
        started = time.perf_counter()
        self.prefetch(prefetch)
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
            result = evaluator.evaluate_shard(self.local_url(shard), expected_samples=shard.samples)
            report.throughput = evaluator.throughput
        report.failed.update(result.failed_models)
        with self.sessions.begin() as session:
            store_shard_result(
                session,
                dataset_name,
                shard.index,
                result.keys,
                result.predictions,
                result.failures.reasons,
                model_ids,
            )
        report.stored = list(result.predictions)
        report.samples = len(result.keys)
        report.undecodable = len(result.failures)
        report.seconds = time.perf_counter() - started
        return report
