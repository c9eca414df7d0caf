"""Zoo-scale sweep simulation: the real driver, database and Ray; a modelled evaluation.

    python -m bench.sweep_scale --gpus 16 [--gpus-per-node 8] [--models 1266] [--shards 50]
        [--database-url URL] [--time-scale 0.2] [--bundle-seconds 3] [--pool ray|sim]
    [--no-search-tail] --json OUT

What is real: the sweep driver (``orchestrator.sweeps.driver``, unchanged), the database
(SQLite, or the PostgreSQL of ``--database-url``) with every sweep, unit, model, shard and
prediction-chunk row the product writes, the incremental saver search, and with ``--pool ray``
(the default up to ``REAL_RAY_MAX`` GPUs) Ray itself: a local Ray whose node declares G logical
GPUs, one worker actor per GPU. What is modelled: each worker's evaluation, a
``bench.standin.StandInWorker`` that sleeps for the unit's modelled H200 time
(``bench.sweep_costs``: forward passes, loads, reads, decode) times ``--time-scale`` and writes
real chunks; the node a worker belongs to (``--gpus-per-node`` consecutive workers share one
record of the shards read); and with ``--pool sim`` the workers run as threads of this process
(the same driver code against an in-process pool), for G beyond what one machine's processes
hold. The driver's own costs are real and not scaled, and so is the search: ``answers_s``, from
the first worker ready to the search process's answer for its last batch (every best saver
stored), counts the search's real seconds against a makespan shortened by ``--time-scale``.
The zoo: ``--models`` tags spread over timm's pretrained ImageNet-1k table
(``bench/data/timm_in1k_zoo.csv``, ``python -m bench.zoo_table``), each shard 1,000 samples.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from bench.standin import NodeReads, StandInWorker, WorkerCounts
from bench.standin_pool import SimPool, ray_pool
from bench.sweep_costs import CostModel, ZooModel, fit_anchors, pick, read_zoo
from cluster.settings import Settings
from db.models import Dataset, Model, PredictionChunk, Sweep
from db.queries import add_shard
from db.schema import ensure_schema
from db.session import session_factory
from orchestrator.sweeps.plan import DEFAULT_BUNDLE_SECONDS
from orchestrator.sweeps.store import SweepOptions

SIM_CONNECTIONS = 48  # database connections of the in-process pool's workers
REAL_RAY_MAX = 64  # logical GPUs as real Ray actor processes on a 2-core, 24 GB machine
SAMPLES_PER_SHARD = 1000
DEFAULT_TIME_SCALE = 0.2  # a 16-GPU run of the full zoo: about two and a half minutes here


def populate(sessions, zoo: list[ZooModel], shards: int, options: SweepOptions) -> int:
    """The dataset, the models (as a sweep registers them) and a queued sweep; its id."""
    with sessions.begin() as session:
        if session.scalar(select(func.count()).select_from(Model)):
            raise SystemExit("error: the database already holds models; give an empty one")
        dataset = Dataset(
            name="imagenet-val-sim",
            shard_urls="s3://sim/val-{00000..00049}.tar",
            num_samples=shards * SAMPLES_PER_SHARD,
            num_classes=1000,
        )
        session.add(dataset)
        session.flush()
        labels = np.random.default_rng(0).integers(0, 1000, SAMPLES_PER_SHARD)
        for index in range(shards):
            keys = [f"s{index:05d}-{i:05d}" for i in range(SAMPLES_PER_SHARD)]
            add_shard(session, dataset, index, keys, labels, url=f"s3://sim/val-{index:05d}.tar")
        for model in zoo:
            config = {
                "input_size": [3, model.img_size, model.img_size],
                "crop_pct": model.crop_pct,
                "interpolation": model.interpolation,
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
            }
            session.add(
                Model(
                    name=model.name,
                    arch=model.name.split(".")[0],
                    source="timm",
                    gmacs=model.gmacs,
                    params_m=model.params_m,
                    input_size=config["input_size"],
                    crop_pct=model.crop_pct,
                    interpolation=model.interpolation,
                    data_config=config,
                    random_weights=True,
                )
            )
        sweep = Sweep(
            dataset_id=dataset.id,
            submitted_by="bench",
            model_patterns=["*"],
            models=[m.name for m in zoo],
            options=asdict(options),
        )
        session.add(sweep)
        session.flush()
        return sweep.id


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_scale", description=__doc__)
    parser.add_argument("--gpus", type=int, default=16)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--models", type=int, default=1266)
    parser.add_argument("--shards", type=int, default=50)
    parser.add_argument("--database-url", help="Default: a new SQLite file.")
    parser.add_argument("--time-scale", type=float, default=DEFAULT_TIME_SCALE)
    parser.add_argument("--bundle-seconds", type=float, default=DEFAULT_BUNDLE_SECONDS)
    parser.add_argument("--pool", choices=("ray", "sim"), help="Default: ray up to 64 GPUs.")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--no-search-tail",
        dest="search_tail",
        action="store_false",
        help="Stop when the last unit lands, and the search with it, leaving the "
        "last models unsearched (it runs during the sweep anyway).",
    )
    args = parser.parse_args(argv)
    pool_kind = args.pool or ("ray" if args.gpus <= REAL_RAY_MAX else "sim")
    costs = fit_anchors()
    zoo = pick(read_zoo(), args.models)
    with tempfile.TemporaryDirectory(prefix="saverzoo-sweep-scale-") as tmp:
        url = args.database_url or f"sqlite:///{tmp}/sim.db"
        ensure_schema(url)
        sessions = session_factory(url)
        options = SweepOptions(random_weights=True, bundle_seconds=args.bundle_seconds)
        sweep_id = populate(sessions, zoo, args.shards, options)
        figures = run_sweep(args, pool_kind, url, sessions, sweep_id, zoo, costs, Path(tmp))
    print_figures(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def driver_class(search_tail: bool):
    """The product's driver (its search process notes when it last answered); without
    ``search_tail``, one that leaves the search of the last models when the last unit lands (the
    search still runs during the sweep, as always)."""
    from orchestrator.sweeps.driver import SweepDriver
    from orchestrator.sweeps.search_process import BackgroundSearch

    if search_tail:
        return SweepDriver

    class LeftSearch(BackgroundSearch):
        def close(self) -> None:
            self.end_input()
            # No wait, and no search of the last models after the sweep's end: they would share
            # this machine's cores with the next run. Its last batch is rolled back.
            self._process.terminate()

    class NoTailDriver(SweepDriver):
        search_class = LeftSearch

        def _search_what_is_missing(self) -> None:
            pass

    return NoTailDriver


def run_sweep(args, pool_kind, url, sessions, sweep_id, zoo, costs: CostModel, tmp: Path) -> dict:
    SweepDriver = driver_class(args.search_tail)

    settings = Settings(database_url=url)
    by_name = {m.name: m for m in zoo}
    nodes = tmp / "nodes"
    if pool_kind == "ray":
        from cluster.ray_cluster import connected

        with connected(None, num_cpus=args.gpus, num_gpus=args.gpus):
            pool = ray_pool(url, args.gpus_per_node, args.time_scale, costs, nodes)
            driver = SweepDriver(sessions, settings, sweep_id, pool=pool)
            began = time.monotonic()
            state = driver.run()
            makespan = time.monotonic() - began
            counts = pool.counts()
    else:
        workers = []
        # The in-process workers share one connection pool of their own, as many connections as
        # a database gives readily (PostgreSQL's default limit is 100); a unit waits for one.
        worker_sessions = session_factory(url, connections=SIM_CONNECTIONS)

        def make_worker(index: int) -> StandInWorker:
            reads = NodeReads(nodes / f"node-{index // args.gpus_per_node}")
            worker = StandInWorker(worker_sessions, by_name, costs, args.time_scale, reads)
            workers.append(worker)
            return worker

        pool = SimPool(args.gpus, make_worker)
        driver = SweepDriver(sessions, settings, sweep_id, pool=pool)
        began = time.monotonic()
        state = driver.run()
        makespan = time.monotonic() - began
        counts = [w.counts for w in workers]
    return figures_of(args, pool_kind, sessions, zoo, costs, driver, state, makespan, counts, began)


def figures_of(
    args,
    pool_kind,
    sessions,
    zoo,
    costs,
    driver,
    state,
    makespan,
    counts: list[WorkerCounts],
    began,
) -> dict:
    timing = driver.times
    first_ready = timing.ready_s[0] if timing.ready_s else 0.0
    # From the first worker ready to the last unit's result: planning, the cluster's start-up
    # and the search of the last models (the workers are free by then) are reported apart.
    units_done = timing.units_done_s or (began + makespan - driver.started)
    makespan_s = units_done - first_ready
    search_tail_s = began + makespan - (driver.started + units_done)
    # Time to answers: from the first worker ready to the search process's answer for its last
    # batch (every base's best saver stored), on the same clock as the makespan. The search is
    # real and runs in real time: --time-scale shortens the GPUs' work, not the search's.
    answered_at = driver.search.answered_at
    answers_s = answered_at - driver.started - first_ready if answered_at else None
    necessary = (
        (
            sum(costs.forward_s(m, SAMPLES_PER_SHARD) for m in zoo) * args.shards
            + sum(costs.load_s(m) for m in zoo)
        )
        / args.gpus
        * args.time_scale
    )
    loads: dict[str, int] = {}
    for worker in counts:
        for name, times in worker.loads.items():
            loads[name] = loads.get(name, 0) + times
    reads = sum(w.reads for w in counts)
    nodes = -(-args.gpus // args.gpus_per_node)
    with sessions.begin() as session:
        chunk_rows = session.scalar(select(func.count()).select_from(PredictionChunk))
        distinct = session.scalar(
            select(func.count()).select_from(
                select(PredictionChunk.model_id, PredictionChunk.shard_index).distinct().subquery()
            )
        )
    expected = len(zoo) * args.shards
    per_unit = timing.per_unit_s
    overhead = sum(w.busy_s - w.modelled_s * args.time_scale for w in counts)
    return {
        "gpus": args.gpus,
        "gpus_per_node": args.gpus_per_node,
        "models": len(zoo),
        "shards": args.shards,
        "database": args.database_url.split(":")[0] if args.database_url else "sqlite",
        "pool": pool_kind,
        "real_ray_actors": len(timing.ready_s) if pool_kind == "ray" else 0,
        "time_scale": args.time_scale,
        "bundle_seconds": args.bundle_seconds,
        "state": state,
        "units": driver.units_total,
        "makespan_s": round(makespan_s, 2),
        "startup_s": round(first_ready, 2),
        "necessary_s": round(necessary, 2),
        "efficiency": round(necessary / makespan_s, 3) if makespan_s else 0.0,
        "driver_ms_per_unit_p50": round(percentile(per_unit, 50) * 1000, 3),
        "driver_ms_per_unit_p99": round(percentile(per_unit, 99) * 1000, 3),
        "driver_ms_per_unit_amortised": round(
            timing.bookkeeping_s / max(1, driver.units_total) * 1000, 3
        ),
        # The driver's own CPU time: its wall time less the waits for one of this machine's
        # cores, which it shares with the actors, the database and the search.
        "driver_cpu_ms_per_unit_amortised": round(
            timing.bookkeeping_cpu_s / max(1, driver.units_total) * 1000, 3
        ),
        "model_loads_per_model": round(sum(loads.values()) / len(zoo), 3),
        "model_loads_max": max(loads.values(), default=0),
        "shard_reads_per_node": round(reads / nodes / args.shards, 3),
        "search_s": round(driver.search.seconds, 2),
        "search_tail_s": round(search_tail_s, 2) if args.search_tail else None,
        "answers_s": round(answers_s, 2) if args.search_tail and answers_s else None,
        "answers_over_makespan": round(answers_s / makespan_s, 3)
        if args.search_tail and answers_s and makespan_s
        else None,
        "search_waited_by_dispatch": False,  # the search runs in its own process
        # The stand-in's own real cost per unit (queries, chunk writes, waiting for a CPU of
        # this machine), beyond the modelled time it slept: a simulator's cost, not a GPU's.
        "standin_overhead_s_per_unit": round(overhead / max(1, driver.units_total), 4),
        "efficiency_without_standin_overhead": round(
            necessary / max(1e-9, makespan_s - overhead / max(1, len(counts))), 3
        ),
        # Workers start one after another (here 64 Python processes on two cores): each GPU's
        # time counted from when its own worker was ready.
        "workers_ready_spread_s": round(max(timing.ready_s) - min(timing.ready_s), 2)
        if timing.ready_s
        else 0.0,
        "efficiency_from_each_worker_ready": round(
            necessary * args.gpus / sum(units_done - r for r in timing.ready_s), 3
        )
        if timing.ready_s
        else 0.0,
        "worker_busy_fraction": round(statistics.mean(w.busy_s for w in counts) / makespan_s, 3)
        if counts and makespan_s
        else 0.0,
        "chunks_exactly_once": chunk_rows == distinct == expected,
        "chunks": chunk_rows,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "modelled": "each worker's evaluation (bench.sweep_costs on H200 anchors) and nodes",
        "real": "driver, database, saver search" + (", Ray actors" if pool_kind == "ray" else ""),
        "answers": "the real search process's last answer, unscaled; the makespan is scaled by "
        "--time-scale, so answers_over_makespan counts the search 1/time-scale times as dear",
    }


def print_figures(figures: dict) -> None:
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:>{width}}: {value}")


if __name__ == "__main__":
    main()
