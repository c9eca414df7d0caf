"""The sweep's schedule alone, in modelled time: ``python -m bench.schedule``.

    python -m bench.schedule [--gpus 16 64 256] [--gpus-per-node 8] [--models 1266]
                             [--shards 50] [--bundle-seconds 3] [--noise 0]
                             [--start-spread 0] [--signals 1] [--search-ms-per-pair 0.075]
                             [--write-us-per-row 62] [--search-cpus-per-node 0] [--json OUT]

What is real: the planner (``orchestrator.sweeps.plan.plan_units``, the bundles of a zoo-scale
sweep) and the driver's queue (``orchestrator.sweeps.queue.PlannedQueue``), unchanged.
What is modelled: everything else. Each worker is a ``bench.standin.StandInWorker`` whose unit
takes its modelled H200 time (``bench.sweep_costs``: loads of models it does not hold, the
shard's read once per node, one decode, a resize per data config, the forward passes); a worker
holds units as the driver feeds it (the one it runs, and its next after a short one), and a
worker left without one asks again whenever another finishes a unit, as the driver does, and
reports each unit's end to the queue, through the driver's own feed loop
(``orchestrator.sweeps.queue.feed``; the driver's own cost, measured by
``bench.sweep_scale`` at about 1 ms a unit, and Ray's are left out), and time is an event clock,
not a sleep. ``--noise S`` makes each model's true forward time its modelled time times a
log-normal factor (sigma S, seed 0) that the planner and the queue do not know: how the schedule
holds when the cost model is wrong. ``--start-spread T`` starts the workers one after another
over T seconds instead of all at once, as Ray started them on one small machine in
``bench.sweep_scale``: how much of that run's loss the staggered start explains. So this
measures what the schedule itself costs at any cluster size in seconds, and
``bench.sweep_scale`` what the real driver, database and Ray add on top.

Time to answers: as each model's last unit ends, the incremental saver search takes it
(``bench.answers``: batches as the search process forms them, every pair of a new model with the
models completed before it, ``--signals`` times; ``--search-ms-per-pair`` of computation per pair
on one core, ``--write-us-per-row`` of serial writing per stored row). ``--search-cpus-per-node
C`` spreads the computation over C cores of each 8-GPU node (0: today's one search process),
the writes staying in one process. ``answers_s``: from the first worker ready to the last best
saver stored; the search never changes the GPUs' schedule.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
from collections import deque
from pathlib import Path

from bench.answers import SearchCosts, search_run, zoo_pairs
from bench.standin import ShardsRead, StandInWorker
from bench.sweep_costs import CostModel, ZooModel, fit_anchors, pick, read_zoo
from db.refs import ShardRef
from orchestrator.sweeps.plan import (
    DEFAULT_BUNDLE_SECONDS,
    PlannedModel,
    load_seconds,
    plan_units,
)
from orchestrator.sweeps.queue import PlannedQueue, QueuedUnit, feed

SAMPLES_PER_SHARD = 1000
# Measured on a 2-core VM (bench/RESULTS.md, "Time to answers"): one core, one process
# (NUMBA_NUM_THREADS=1 python -m bench.search --engine-models 200 --zoos; through Ray 0.067 a
# core, python -m bench.search_ray) and the serial write (python -m bench.search_writes, SQLite;
# PostgreSQL 15: 93).
SEARCH_MS_PER_PAIR = 0.075
WRITE_US_PER_ROW = 62.0


def schedule(
    zoo: list[ZooModel],
    costs: CostModel,
    gpus: int,
    gpus_per_node: int = 8,
    shards: int = 50,
    bundle_seconds: float = DEFAULT_BUNDLE_SECONDS,
    noise: float = 0.0,
    start_spread: float = 0.0,
    search: SearchCosts | None = None,
) -> dict:
    """The modelled makespan of a sweep of ``zoo`` over ``shards`` on ``gpus`` workers; with
    ``search``, when its saver search has every answer (``bench.answers``)."""
    by_name = {m.name: m for m in zoo}
    refs = [ShardRef(i, "", SAMPLES_PER_SHARD) for i in range(shards)]
    planned = [PlannedModel(m.name, repr(m.config), m.gmacs, m.params_m) for m in zoo]
    units = plan_units(planned, refs, set(), None, bundle_seconds, gpus)
    queue: PlannedQueue[int] = PlannedQueue(
        (
            QueuedUnit(
                i, i, list(u.models), u.shard, u.seconds, images=SAMPLES_PER_SHARD * len(u.models)
            )
            for i, u in enumerate(units)
        ),
        gpus,
        {m.name: load_seconds(m.params_m) for m in planned},
    )
    nodes = [ShardsRead() for _ in range(-(-gpus // gpus_per_node))]
    workers = [
        StandInWorker(None, by_name, costs, 1.0, nodes[w // gpus_per_node]) for w in range(gpus)
    ]
    rng = random.Random(0)
    slowdown = {m.name: math.exp(rng.gauss(0.0, noise)) if noise else 1.0 for m in zoo}
    for stand_in in workers:
        stand_in.slowdown = slowdown

    # Each worker holds units as the driver feeds it (``queue.feed``): the one it runs, and its
    # next after a short one, each beginning when the one before it ends.
    held: list[deque[tuple[QueuedUnit, float]]] = [deque() for _ in range(gpus)]
    events: list[tuple[float, int]] = []  # (when a worker's first held unit ends, worker)
    makespan = now = 0.0

    def hand(w: int, unit: QueuedUnit, following: QueuedUnit | None) -> None:
        prefetch = refs[following.shard] if following is not None else None
        models = [by_name[name] for name in unit.models]
        begins = held[w][-1][1] if held[w] else now
        held[w].append(
            (unit, begins + workers[w].modelled_seconds(models, refs[unit.shard], prefetch))
        )
        if len(held[w]) == 1:
            heapq.heappush(events, (held[w][0][1], w))

    ready = [start_spread * w / max(1, gpus - 1) for w in range(gpus)]
    for w in range(gpus):
        heapq.heappush(events, (ready[w], w))
    started: dict[int, None] = {}  # in the order they started, as the driver keeps its workers
    shards_done = dict.fromkeys(by_name, 0)
    completions: list[tuple[float, float]] = []  # (when, cost) of each model's last shard
    while events:
        now, w = heapq.heappop(events)
        makespan = max(makespan, now)
        if w in started:
            unit, _ = held[w].popleft()
            queue.finished(w, unit, now)
            for name in unit.models:
                shards_done[name] += 1
                if shards_done[name] == shards:
                    completions.append((now, by_name[name].gmacs))
            if held[w]:
                heapq.heappush(events, (held[w][0][1], w))
        started[w] = None
        feed(queue, [w, *started], now, hand)  # this one first, then every worker, as the driver
    assert not len(queue), "units left that no worker would take"
    forward = sum(costs.forward_s(m, SAMPLES_PER_SHARD) * shards * slowdown[m.name] for m in zoo)
    loads = sum(costs.load_s(m) for m in zoo)
    necessary = (forward + loads) / gpus
    load_counts = [sum(w.counts.loads.get(m.name, 0) for w in workers) for m in zoo]
    busy = sum(w.counts.modelled_s for w in workers)
    figures = {
        "gpus": gpus,
        "noise": noise,
        "units": len(units),
        "bundles": len({u.models for u in units}),
        "makespan_s": round(makespan, 1),
        "necessary_s": round(necessary, 1),
        "efficiency": round(necessary / makespan, 3),
        "start_spread_s": start_spread,
        "efficiency_from_each_worker_ready": round(
            necessary * gpus / sum(makespan - r for r in ready), 3
        ),
        "busy_fraction": round(busy / (makespan * gpus), 3),
        "model_loads_per_model": round(sum(load_counts) / len(zoo), 2),
        "model_loads_max": max(load_counts),
        "load_s_share": round(
            sum(n * costs.load_s(m) for n, m in zip(load_counts, zoo, strict=True)) / busy, 3
        ),
        "forward_s_share": round(forward / busy, 3),
        "shard_reads_per_node": round(
            sum(w.counts.reads for w in workers) / (len(nodes) * shards), 2
        ),
    }
    if search is None:
        return figures
    assert len(completions) == len(zoo), "a model that never completed"
    run = search_run(completions, search)
    assert run.pairs == zoo_pairs([m.gmacs for m in zoo])
    return {
        **figures,
        "signals": search.signals,
        "search_cores": search.cores,
        # From the first worker ready (time 0) to the last batch's end: every best saver stored.
        "answers_s": round(run.answers_at, 1),
        "answers_over_makespan": round(run.answers_at / makespan, 3),
        "last_model_s": round(max(t for t, _ in completions), 1),
        "search_pairs": run.pairs,
        "search_batches": run.batches,
        "search_compute_s": round(run.compute_s, 1),
        "search_write_s": round(run.write_s, 1),
        "search_last_batch_s": round(run.last_batch_s, 2),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m bench.schedule", description=__doc__)
    parser.add_argument("--gpus", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--models", type=int, default=1266)
    parser.add_argument("--shards", type=int, default=50)
    parser.add_argument("--bundle-seconds", type=float, default=DEFAULT_BUNDLE_SECONDS)
    parser.add_argument("--noise", type=float, default=0.0, help="sigma of each model's error")
    parser.add_argument(
        "--start-spread",
        type=float,
        default=0.0,
        help="seconds over which the workers start, one after another",
    )
    parser.add_argument("--signals", type=int, choices=(1, 2), default=1)
    parser.add_argument(
        "--search-ms-per-pair",
        type=float,
        default=SEARCH_MS_PER_PAIR,
        help="one pair's computation on one core, one signal",
    )
    parser.add_argument(
        "--write-us-per-row",
        type=float,
        default=WRITE_US_PER_ROW,
        help="one stored row's serial write (built, upserted, best savers, commit)",
    )
    parser.add_argument(
        "--search-cpus-per-node",
        type=int,
        default=0,
        help="cores per node computing pairs; 0: the search process's own one",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    zoo, costs = pick(read_zoo(), args.models), fit_anchors()
    rows = [
        schedule(
            zoo,
            costs,
            g,
            gpus_per_node=args.gpus_per_node,
            shards=args.shards,
            bundle_seconds=args.bundle_seconds,
            noise=args.noise,
            start_spread=args.start_spread,
            search=SearchCosts(
                args.search_ms_per_pair,
                args.write_us_per_row,
                args.signals,
                -(-g // args.gpus_per_node) * args.search_cpus_per_node or 1,
            ),
        )
        for g in args.gpus
    ]
    print(
        "modelled: every worker's unit time (bench.sweep_costs) and the saver search's "
        "(bench.answers); real: planner and queue"
    )
    for row in rows:
        print(", ".join(f"{k} {v}" for k, v in row.items()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
