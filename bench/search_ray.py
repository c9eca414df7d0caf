"""The saver search of a whole zoo in one process and as Ray tasks: ``python -m bench.search_ray``.

    python -m bench.search_ray [--models 1266] [--samples 50000] [--signals 2] [--cpus N]

What is real: the search's pair computation (``search.pairs.pair_columns``), the same code the
service runs, in this process (numba on one thread, as one core does it) and as Ray tasks of an
embedded Ray with ``--cpus`` CPUs (default: this machine's), each task one numba thread; the
columns of both are compared, every value. Both first search a small zoo, so that every process
has compiled (or loaded) the kernels: that is a process's fixed cost, not the zoo's. What is
modelled: the zoo (``search.synthetic``: top-1 probabilities rounded to 4 decimals; the second
signal is the same zoo's probabilities on a coarser grid, standing in for the margin). The rows
are neither built nor written: that half stays in one process either way (``bench.search`` and
``bench.search_writes`` time it).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np

from cluster.settings import DEFAULT_BUDGETS
from search.pairs import SplitZoo, calibration_mask
from search.synthetic import make_zoo


def split_zoos(models: int, samples: int, signals: int) -> list[SplitZoo]:
    from search.engine import Zoo

    synthetic = make_zoo(models, samples, seed=3)
    mask = calibration_mask(f"{i:08d}" for i in range(samples))
    zoos = []
    for signal in range(signals):
        confidence = np.round(synthetic.confidence, 4 - 2 * signal).astype(np.float32)
        zoo = Zoo.from_predictions(
            synthetic.names, synthetic.gmacs, synthetic.predictions, confidence, synthetic.labels
        )
        zoos.append(SplitZoo(zoo, mask))
    return zoos


def every_pair(zoo: SplitZoo) -> dict[int, list[int]]:
    costs = zoo.full.costs
    return {
        s: np.flatnonzero(costs > costs[s]).tolist()
        for s in range(len(costs))
        if (costs > costs[s]).any()
    }


def same_columns(here, there) -> bool:
    """Every value equal, bit for bit (a saver's bases may be split over Ray's blocks)."""
    from search.pairs import COLUMNS

    def joined(computed, name):
        return np.concatenate([getattr(columns, name) for _, _, columns in computed])

    keys = [(s, b) for s, bases, _ in here for b in bases]
    return keys == [(s, b) for s, bases, _ in there for b in bases] and all(
        np.array_equal(joined(here, name), joined(there, name), equal_nan=True) for name in COLUMNS
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1266)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--signals", type=int, default=2, choices=[1, 2])
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    args = parser.parse_args()
    budgets = [round(b * 100) for b in DEFAULT_BUDGETS]
    numba.set_num_threads(1)
    os.environ["NUMBA_NUM_THREADS"] = "1"  # the Ray tasks' processes, one thread each
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{args.models} models x {args.samples:,} samples, {args.signals} signal(s)"
    )
    from search.ray_pairs import BASE_CHUNK
    from search.service import LOCAL_PAIRS

    # Kernels compiled or loaded, in this process and in every Ray worker, on a small zoo first:
    # a fixed cost of a process's first search (about a second a process here), not of a zoo's.
    small = split_zoos(2 * BASE_CHUNK + 2, 2000, 1)[0]
    small_pairs = every_pair(small)
    LOCAL_PAIRS.columns(small, small_pairs, budgets)
    zoos = split_zoos(args.models, args.samples, args.signals)
    wanted = every_pair(zoos[0])
    pairs = sum(map(len, wanted.values())) * args.signals
    start = time.perf_counter()
    local = [LOCAL_PAIRS.columns(zoo, wanted, budgets) for zoo in zoos]
    one_process = time.perf_counter() - start
    print(f"one process: {one_process:.1f} s, {one_process / pairs * 1e3:.4f} ms a pair")

    from cluster.ray_cluster import connected
    from search.ray_pairs import RayPairs

    with connected(None, num_cpus=args.cpus):
        ray_pairs = RayPairs()
        for _ in range(args.cpus):  # each worker's first tasks
            RayPairs().columns(split_zoos(2 * BASE_CHUNK + 2, 2000, 1)[0], small_pairs, budgets)
        start = time.perf_counter()
        remote = [ray_pairs.columns(zoo, wanted, budgets) for zoo in zoos]
        through_ray = time.perf_counter() - start
    print(
        f"Ray, {args.cpus} CPUs: {through_ray:.1f} s, {through_ray / pairs * 1e3:.4f} ms a pair; "
        f"{one_process / through_ray:.2f}x one process"
    )
    same = all(same_columns(here, there) for here, there in zip(local, remote, strict=True))
    print(f"identical columns: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
