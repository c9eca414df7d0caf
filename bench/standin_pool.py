"""Where the simulation's stand-in workers run: as Ray actors (the driver's own ``RayPool``, with
the stand-in for the actor class), or as threads of this process (``SimPool``: the same driver
code for more GPUs than one machine's processes hold)."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import asdict
from pathlib import Path

from bench.standin import NodeReads, StandInWorker, WorkerCounts
from bench.sweep_costs import CostModel, read_zoo
from cluster.ray_cluster import ray_api
from orchestrator.sweeps.pool import RayPool, UnitFailed
from workers.report import UnitReport

ray = ray_api()


@ray.remote(max_restarts=0, max_task_retries=0)
class StandInActor:
    """``workers.actor.EvalActor``'s methods over a ``StandInWorker``; writes its counts to a file
    after each unit (the driver kills its workers at the end)."""

    def __init__(self, config: dict) -> None:
        import os

        from db.session import session_factory

        self.pid = os.getpid()
        zoo = {m.name: m for m in read_zoo()}
        reads = NodeReads(Path(config["nodes"]) / f"node-{config['index'] // config['per_node']}")
        sessions = session_factory(config["database_url"])
        costs = CostModel(**config["costs"])
        self.worker = StandInWorker(sessions, zoo, costs, config["time_scale"], reads)
        self.record = Path(config["nodes"]) / f"worker-{config['index']}.json"

    def where(self) -> str:
        return f"{ray.util.get_node_ip_address()}:{self.pid}"

    def run(self, dataset, shard, specs, model_ids, prefetch=None, **_log_names) -> UnitReport:
        report = self.worker.run(dataset, shard, specs, model_ids, prefetch)
        self.record.write_text(json.dumps(asdict(self.worker.counts)))
        return report


class StandInRayPool(RayPool):
    def __init__(self, config: dict) -> None:
        self.config, self.indices = config, itertools.count()
        super().__init__(self._next_config, {}, actor_class=StandInActor)

    def _next_config(self) -> dict:
        return {**self.config, "index": next(self.indices)}

    def counts(self) -> list[WorkerCounts]:
        records = sorted(Path(self.config["nodes"]).glob("worker-*.json"))
        return [WorkerCounts(**json.loads(p.read_text())) for p in records]


def ray_pool(database_url, per_node, time_scale, costs: CostModel, nodes: Path):
    config = {
        "database_url": database_url,
        "per_node": per_node,
        "time_scale": time_scale,
        "costs": asdict(costs),
        "nodes": str(nodes),
    }
    return StandInRayPool(config)


class SimPool:
    """``gpus`` stand-in workers as threads: each runs its units one after the other, in order,
    like an actor; results are futures."""

    uses_gpus = True

    def __init__(self, gpus: int, make_worker: Callable[[int], StandInWorker]) -> None:
        self.gpus, self.make_worker = gpus, make_worker
        self.started = 0
        self._lock = threading.Lock()
        self._workers: dict[int, tuple[ThreadPoolExecutor, StandInWorker]] = {}

    def slots(self) -> int:
        return self.gpus

    def room(self) -> int:
        return self.gpus - len(self._workers)

    def start(self):
        index = self.started
        self.started += 1
        self._workers[index] = (ThreadPoolExecutor(1, f"gpu{index}"), self.make_worker(index))
        ready: Future = Future()
        ready.set_result(f"sim:{index}")
        return index, ready

    def where(self, ready: Future) -> str:
        return ready.result()

    def submit(self, worker, dataset, shard, specs, model_ids, prefetch=None, _unit=None) -> Future:
        executor, standin = self._workers[worker]
        return executor.submit(standin.run, dataset, shard, list(specs), model_ids, prefetch)

    def wait(self, pending: Sequence[Future], timeout: float) -> list[Future]:
        done, _ = wait_futures(pending, timeout=timeout, return_when=FIRST_COMPLETED)
        return [p for p in pending if p.done()] if done else []

    def result(self, pending: Future) -> UnitReport:
        try:
            return pending.result()
        except Exception as error:  # noqa: BLE001 - a stand-in's own failure: the unit is retried
            raise UnitFailed(f"{type(error).__name__}: {error}") from None

    def stop(self, worker) -> None:
        executor, _ = self._workers.pop(worker)
        executor.shutdown(wait=False, cancel_futures=True)
