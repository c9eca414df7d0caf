"""Where a sweep's work units run: a pool of workers the driver starts, feeds and stops.

The driver sees workers and pending results through this one interface, so the same driver code
runs against Ray actors on a cluster (``RayPool``) and against the cluster simulation's
in-process pool (``bench.sweep_scale``). A worker runs the units given to it one after the other,
in order; a result is an opaque handle the pool can wait on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cluster.errors import InputError, ServiceError
from cluster.logs import SweepLog
from cluster.ray_cluster import ray_api
from cluster.redact import error_line
from db.refs import ShardRef
from workers.report import UnitReport
from workers.spec import ModelSpec

Worker = Any  # a pool's handle of one worker
Pending = Any  # a pool's handle of a result to come

logger = logging.getLogger(__name__)


class WorkerLost(Exception):
    """The worker died (killed, its node lost, a fatal GPU error): its units go back."""


class UnitFailed(Exception):
    """The unit raised inside the worker (a shard, the database); the message says what."""


class WorkerPool(Protocol):
    uses_gpus: bool

    def slots(self) -> int:
        """How many workers the cluster holds at most."""

    def room(self) -> int:
        """How many more workers can start now."""

    def start(self) -> tuple[Worker, Pending]:
        """A new worker, and the result that says where it runs once it is ready."""

    def where(self, ready: Pending) -> str:
        """Where a started worker runs; raises ``WorkerLost`` when it could not start."""

    def submit(
        self,
        worker: Worker,
        dataset: str,
        shard: ShardRef,
        specs: Sequence[ModelSpec],
        model_ids: dict[str, int],
        prefetch: ShardRef | None = None,
        unit: int | None = None,
    ) -> Pending:
        """Queue a unit on ``worker``; ``prefetch`` names the shard of its next unit, ``unit``
        the unit's index (for the worker's log records)."""

    def wait(self, pending: Sequence[Pending], timeout: float) -> list[Pending]:
        """Every one of ``pending`` that is ready, waiting up to ``timeout`` for the first."""

    def result(self, pending: Pending) -> UnitReport:
        """A unit's report; raises ``WorkerLost`` or ``UnitFailed``."""

    def stop(self, worker: Worker) -> None: ...


class RayPool:
    """One ``workers.actor.EvalActor`` per GPU of the cluster (``num_gpus=1``), or on a cluster
    without GPUs one per ``cpus_per_worker`` CPUs; decided once, so GPU workers stay GPU workers
    while nodes come and go."""

    def __init__(
        self,
        eval_options: Callable[[], object],
        env: dict[str, str],
        cpus_per_worker: int = 1,
        actor_class: Any = None,
        sweep_id: int | None = None,
    ) -> None:
        self.ray = ray_api()  # before Ray is first imported: token authentication decided
        self.eval_options, self.env, self.actor_class = eval_options, env, actor_class
        self.uses_gpus = self.ray.cluster_resources().get("GPU", 0) >= 1
        self.resources = (
            {"num_gpus": 1, "num_cpus": 1}
            if self.uses_gpus
            else {"num_gpus": 0, "num_cpus": cpus_per_worker}
        )
        self.sweep_id = sweep_id
        self.log = logger if sweep_id is None else SweepLog(logger, sweep_id)
        self.log.info("one worker per %s", "GPU" if self.uses_gpus else f"{cpus_per_worker} CPUs")

    def slots(self) -> int:
        total = self.ray.cluster_resources()
        if self.uses_gpus:
            return int(total.get("GPU", 0))
        return int(total.get("CPU", 0) // self.resources["num_cpus"])

    def search_address(self, workers: int) -> str | None:
        """The cluster's address when ``workers`` leave CPUs free, for the saver search to
        compute its pairs there; None when they take every CPU (the search then runs in its own
        process, as it would beside them)."""
        spare = self.ray.cluster_resources().get("CPU", 0) - workers * self.resources["num_cpus"]
        return self.ray.get_runtime_context().gcs_address if spare >= 1 else None

    def room(self) -> int:
        free = self.ray.available_resources()
        fit = int(free.get("CPU", 0) // self.resources["num_cpus"])
        return min(fit, int(free.get("GPU", 0))) if self.uses_gpus else fit

    def start(self) -> tuple[Worker, Pending]:
        actor_class = self.actor_class
        if actor_class is None:
            from workers.actor import EvalActor as actor_class  # imports Ray and torch
        actor = actor_class.options(**self.resources, runtime_env={"env_vars": self.env}).remote(
            self.eval_options()
        )
        return actor, actor.where.remote()

    def where(self, ready: Pending) -> str:
        try:
            return self.ray.get(ready)
        except self.ray.exceptions.RayError as error:
            self.log.warning("a worker could not start: %s", _first_line(error))
            raise WorkerLost(_first_line(error)) from None

    def submit(self, worker, dataset, shard, specs, model_ids, prefetch=None, unit=None) -> Pending:
        return worker.run.remote(
            dataset, shard, list(specs), model_ids, prefetch, sweep_id=self.sweep_id, unit=unit
        )

    def wait(self, pending: Sequence[Pending], timeout: float) -> list[Pending]:
        ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=timeout)
        if ready:  # and whatever else is ready by now, without waiting again
            taken = set(ready)
            rest = [p for p in pending if p not in taken]
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0) if rest else ([], [])
            ready = [*ready, *more]
        return ready

    def result(self, pending: Pending) -> UnitReport:
        try:
            return self.ray.get(pending)
        except self.ray.exceptions.RayActorError as error:  # worker killed, node lost, GPU fatal
            raise WorkerLost(f"worker lost ({_first_line(error)})") from None
        except self.ray.exceptions.RayTaskError as error:  # inside the unit: shard, database
            raise UnitFailed(_task_error(error)) from None

    def stop(self, worker: Worker) -> None:
        self.ray.kill(worker, no_restart=True)


def _first_line(error: BaseException) -> str:
    """The error's first line, any password in it hidden (it is logged and stored)."""
    return error_line(error)


def _task_error(error: Any) -> str:
    cause = error.cause if getattr(error, "cause", None) is not None else error
    if isinstance(cause, ServiceError | InputError):
        return str(cause)
    return f"{type(cause).__name__}: {_first_line(cause)}"
