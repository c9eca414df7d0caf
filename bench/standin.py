"""The simulation's stand-in worker: the real worker's interface and writes, a modelled duration.

A ``StandInWorker`` takes the same units as ``workers.unit.UnitRunner`` (dataset, shard, specs,
model ids) and stores the same prediction chunks through the same code (``workers.store``), one
transaction per unit: 1,000 random top-1 classes and probabilities per model, 6 bytes a sample.
Instead of evaluating it sleeps for the unit's modelled time (``bench.sweep_costs``) times the
time scale: loads of the models it does not hold (kept while they fit the device memory), the
shard's read when its node has not read it yet, one decode, a resize per data config, and every
model's forward pass. No torch: a worker process costs what the driver's own code costs.
"""

from __future__ import annotations

import os
import time
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import sessionmaker

from bench.sweep_costs import CostModel, ZooModel
from db.refs import ShardRef
from workers.report import ShardPredictions, UnitReport
from workers.spec import ModelSpec
from workers.store import store_shard_result, stored_models


@dataclass
class WorkerCounts:
    """What one stand-in worker did, for the simulation's report."""

    units: int = 0
    loads: dict[str, int] = field(default_factory=dict)  # model -> times loaded here
    reads: int = 0  # shards this worker read from object storage for its node
    modelled_s: float = 0.0  # the unit time it slept for, before the time scale
    busy_s: float = 0.0  # wall time inside units, writes included


class NodeReads:
    """Which shards a node has read, kept as marker files in the node's folder: the first worker
    of the node to need a shard reads it (modelled), the others find it there."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def claim(self, shard: int) -> bool:
        """True when this caller is the one to read ``shard`` for the node."""
        try:
            os.close(os.open(self.folder / f"shard-{shard}", os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False


class ShardsRead:
    """``NodeReads`` in memory, for workers that are one process (``bench.schedule``)."""

    def __init__(self) -> None:
        self.read: set[int] = set()

    def claim(self, shard: int) -> bool:
        if shard in self.read:
            return False
        self.read.add(shard)
        return True


class StandInWorker:
    def __init__(
        self,
        sessions: sessionmaker | None,
        zoo: dict[str, ZooModel],
        costs: CostModel,
        time_scale: float,
        node_reads: NodeReads | ShardsRead | None,
    ) -> None:
        self.sessions, self.zoo, self.costs = sessions, zoo, costs
        self.time_scale, self.node_reads = time_scale, node_reads
        self.loaded: OrderedDict[str, float] = OrderedDict()  # model -> device bytes
        self.prefetched: dict[int, float] = {}  # shard -> read time left when its unit starts
        self.counts = WorkerCounts()
        # model -> true time / modelled time of its forward passes, which the driver does not
        # know (bench.schedule --noise); 1 where absent
        self.slowdown: dict[str, float] = {}

    def _load(self, model: ZooModel) -> float:
        """Seconds to make ``model`` resident; least recently used models leave to fit it."""
        if model.name in self.loaded:
            self.loaded.move_to_end(model.name)
            return 0.0
        size = self.costs.device_bytes(model)
        while self.loaded and sum(self.loaded.values()) + size > self.costs.model_memory_bytes:
            self.loaded.popitem(last=False)
        self.loaded[model.name] = size
        self.counts.loads[model.name] = self.counts.loads.get(model.name, 0) + 1
        return self.costs.load_s(model)

    def _read(self, shard: int) -> float:
        if shard in self.prefetched:  # read while the unit before ran
            return self.prefetched.pop(shard)
        if self.node_reads is not None and not self.node_reads.claim(shard):
            return 0.0  # another worker of the node read it
        self.counts.reads += 1
        return self.costs.read_s()

    def _prefetch(self, shard: int, overlap_s: float) -> None:
        """The next unit's shard read during ``overlap_s`` of this unit: what is left of the read
        is paid when that unit starts."""
        if self.node_reads is None or self.node_reads.claim(shard):
            self.counts.reads += 1
            self.prefetched[shard] = max(0.0, self.costs.read_s() - overlap_s)

    def modelled_seconds(
        self, models: Sequence[ZooModel], shard: ShardRef, prefetch: ShardRef | None
    ) -> float:
        """A unit's modelled time on this worker: loads of the models it does not hold, the
        shard's read (unless prefetched or read by the node), one decode, a resize per data
        config and the forward passes; the next unit's shard is prefetched meanwhile."""
        seconds = sum(self._load(m) for m in models) + self._read(shard.index)
        seconds += self.costs.decode_s(shard.samples, len({m.config for m in models}))
        seconds += sum(
            self.costs.forward_s(m, shard.samples) * self.slowdown.get(m.name, 1.0) for m in models
        )
        if prefetch is not None and prefetch.index != shard.index:
            self._prefetch(prefetch.index, seconds)
        self.counts.modelled_s += seconds
        return seconds

    def run(
        self,
        dataset: str,
        shard: ShardRef,
        specs: Sequence[ModelSpec],
        model_ids: dict[str, int],
        prefetch: ShardRef | None = None,
    ) -> UnitReport:
        started = time.perf_counter()
        report = UnitReport(shard.index, device_type="NVIDIA H200 (modelled)")
        assert self.sessions is not None  # a worker that runs units writes their chunks
        with self.sessions.begin() as session:
            done = stored_models(session, dataset, shard.index, list(model_ids.values()))
        report.skipped = [s.name for s in specs if model_ids[s.name] in done]
        models = [self.zoo[s.name] for s in specs if model_ids[s.name] not in done]
        if models:
            seconds = self.modelled_seconds(models, shard, prefetch)
            time.sleep(seconds * self.time_scale)
            predictions = {m.name: _random_top1(m.name, shard) for m in models}
            with self.sessions.begin() as session:
                store_shard_result(
                    session, dataset, shard.index, _keys(shard), predictions, {}, model_ids
                )
            report.stored = [m.name for m in models]
            report.samples = shard.samples
        self.counts.units += 1
        report.seconds = time.perf_counter() - started
        self.counts.busy_s += report.seconds
        return report


def _keys(shard: ShardRef) -> list[str]:
    return [f"s{shard.index:05d}-{i:05d}" for i in range(shard.samples)]


def _random_top1(name: str, shard: ShardRef) -> ShardPredictions:
    seed = zlib.crc32(f"{name}/{shard.index}".encode())  # the same in every process
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 1000, size=(shard.samples, 1))
    probs = rng.random((shard.samples, 1), dtype=np.float32)
    return ShardPredictions(classes, probs)
