"""The Ray actor that runs work units: one per GPU of the cluster (or per few CPUs).

The only module of ``workers`` that imports Ray. It is a thin shell around ``UnitRunner``: the
actor reads its settings from its environment (the node's, plus what Ray's runtime environment
adds: nothing secret, ``cluster.ray_cluster``), keeps models
loaded between units, and writes each unit's chunks to the database itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ray

from db.refs import ShardRef
from workers.evaluate import EvalOptions, FatalDeviceError
from workers.report import UnitReport
from workers.shard_cache import ShardCache
from workers.spec import ModelSpec
from workers.unit import UnitRunner, model_memory_budget


@ray.remote(max_restarts=0, max_task_retries=0)
class EvalActor:
    def __init__(self, options: EvalOptions) -> None:
        import torch

        from cluster.ray_cluster import check_worker_database
        from cluster.settings import get_settings, shard_cache_folder
        from db.session import session_factory

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
    ) -> UnitReport:
        try:
            return self.runner.run(dataset, shard, specs, model_ids, prefetch=prefetch)
        except FatalDeviceError:
            # The CUDA context is corrupt: nothing more may run in this process. Its unit had
            # stored nothing (one transaction per unit); the driver re-queues it elsewhere.
            os._exit(1)
