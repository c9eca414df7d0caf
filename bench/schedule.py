"""The sweep's schedule alone, in modelled time: ``python -m bench.schedule``.

    python -m bench.schedule [--gpus 16 64 256] [--gpus-per-node 8] [--models 1266]
                             [--shards 50] [--bundle-seconds 3] [--noise 0]
                             [--start-spread 0] [--json OUT]

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
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
from collections import deque
from pathlib import Path

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


def schedule(
    zoo: list[ZooModel],
    costs: CostModel,
    gpus: int,
    gpus_per_node: int = 8,
    shards: int = 50,
    bundle_seconds: float = DEFAULT_BUNDLE_SECONDS,
    noise: float = 0.0,
    start_spread: float = 0.0,
) -> dict:
    """The modelled makespan of a sweep of ``zoo`` over ``shards`` on ``gpus`` workers."""
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
    while events:
        now, w = heapq.heappop(events)
        makespan = max(makespan, now)
        if w in started:
            unit, _ = held[w].popleft()
            queue.finished(w, unit, now)
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
    return {
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
        )
        for g in args.gpus
    ]
    print("modelled: every worker's unit time (bench.sweep_costs); real: planner and queue")
    for row in rows:
        print(", ".join(f"{k} {v}" for k, v in row.items()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
