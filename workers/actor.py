"""The Ray actor that runs work units: one per GPU of the cluster (or per few CPUs).

The only module of ``workers`` that imports Ray. It is a thin shell around ``UnitRunner``: the
actor reads its settings from its environment (the node's, plus what Ray's runtime environment
adds: nothing secret, ``cluster.ray_cluster``), keeps models
loaded between units, and writes each unit's chunks to the database itself.

Its records go to its standard error, which Ray keeps in the worker's log file on its node
(``logs/worker-*.err`` of the Ray session's folder; the driver does not copy them into its own
output): INFO and above, each naming the sweep and unit it was running (``cluster.logs``). A
unit's success is DEBUG (a sweep has thousands); a failing model, a failed unit, an out-of-memory
retry are WARNING.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import ray

from cluster.logs import RunningUnit, SweepLog, log_to_stderr
from cluster.redact import error_line
from db.refs import ShardRef
from workers.evaluate import EvalOptions, FatalDeviceError
from workers.report import UnitReport
from workers.shard_cache import ShardCache
from workers.spec import ModelSpec
from workers.unit import UnitRunner, model_memory_budget

logger = logging.getLogger(__name__)
UnitLog = logging.Logger | logging.LoggerAdapter[logging.Logger]


@ray.remote(max_restarts=0, max_task_retries=0)
class EvalActor:
    def __init__(self, options: EvalOptions) -> None:
        import torch

        from cluster.ray_cluster import check_worker_database
        from cluster.settings import get_settings, shard_cache_folder
        from db.session import session_factory

        self.unit = RunningUnit()
        for handler in log_to_stderr(logging.INFO):
            handler.addFilter(self.unit)
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
        settings = get_settings()
        check_worker_database(settings)  # secrets come from the node, not from Ray
        cache = None
        if settings.shard_cache_gb > 0:
            cache = ShardCache(shard_cache_folder(settings), int(settings.shard_cache_gb * 1e9))
        self.runner = UnitRunner(
            session_factory(settings.database_url), options, cache, model_memory_budget(options)
        )
        logger.info(
            "worker %s ready: %s, %d CPU threads, shard cache %s",
            self.where(),
            options.device,
            torch.get_num_threads(),
            "off" if cache is None else f"{settings.shard_cache_gb:g} GB",
        )

    def where(self) -> str:
        """node address:pid of this worker, for reports (and for stopping it by hand)."""
        return f"{ray.util.get_node_ip_address()}:{os.getpid()}"

    def run(
        self,
        dataset: str,
        shard: ShardRef,
        specs: Sequence[ModelSpec],
        model_ids: dict[str, int],
        prefetch: ShardRef | None = None,
        *,
        sweep_id: int | None = None,
        unit: int | None = None,
    ) -> UnitReport:
        """Run one unit; ``sweep_id`` and ``unit`` name it in this worker's log records."""
        with self.unit.running(sweep_id, unit):
            try:
                return run_logged(
                    unit_log(sweep_id, unit),
                    lambda: self.runner.run(dataset, shard, specs, model_ids, prefetch=prefetch),
                    shard.index,
                    len(specs),
                )
            except FatalDeviceError:
                # The CUDA context is corrupt: nothing more may run in this process. Its unit
                # had stored nothing (one transaction per unit); the driver re-queues it.
                logging.shutdown()  # the record of why is written before the process ends
                os._exit(1)


def unit_log(sweep_id: int | None, unit: int | None) -> UnitLog:
    """This module's logger, naming the sweep and unit where they are known."""
    if sweep_id is None:
        return logger
    log = SweepLog(logger, sweep_id)
    return log if unit is None else log.for_unit(unit)


def run_logged(log: UnitLog, run: Callable[[], UnitReport], shard: int, models: int) -> UnitReport:
    """``run`` a unit of ``models`` models on ``shard``, logged: its start and success at DEBUG,
    each failing model and a unit that raised at WARNING (the driver tries them again), a fatal
    device error at ERROR; what it raised is raised again."""
    log.debug("shard %d: %d models started", shard, models)
    try:
        report = run()
    except FatalDeviceError as error:
        log.error("shard %d: %s; this worker ends, its unit goes to another", shard, error)
        raise
    except Exception as error:
        log.warning("shard %d failed: %s", shard, _first_line(error))
        raise
    for name, why in report.failed.items():
        log.warning("shard %d: model %s failed: %s", shard, name, why)
    log.debug(
        "shard %d: %d models stored, %d there already, %d failed, %d samples in %.2f s",
        shard,
        len(report.stored),
        len(report.skipped),
        len(report.failed),
        report.samples,
        report.seconds,
    )
    return report


def _first_line(error: BaseException) -> str:
    """The error's type and first line, any password in it hidden (it is logged)."""
    return f"{type(error).__name__}: {error_line(error)}"
