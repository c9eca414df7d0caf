"""Time to answers in modelled time: the incremental saver search behind a sweep.

A sweep's models complete one after another (their last shard's unit ends). The search takes
them in batches, as the real search process does (``orchestrator.sweeps.search_process``): when
it is free it takes every model completed meanwhile, searches the batch, and only then looks
again. A batch's pairs are each new model with every model completed before it whose cost
differs (``search.engine.dearer_than``: no pair between models of equal cost), once per
confidence signal; each pair stores a row per criterion (the default budgets and the paper's).

A batch costs its pair computation, ``ms_per_pair`` on one core spread evenly over ``cores``,
then its rows written by one process, ``us_per_row`` each (``bench.search_writes``: rows built,
upserted, best savers updated, committed). The answers are in when the last batch ends. Left
out: the per-batch reads (lock, the new models' predictions, obsolete pairs) and, with many
cores, how the pairs reach them (task overhead, shipping the zoo): an optimistic spread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from cluster.settings import DEFAULT_BUDGETS

ROWS_PER_PAIR = len(DEFAULT_BUDGETS) + 1  # a row per default budget, and the paper criterion's


@dataclass(frozen=True)
class SearchCosts:
    ms_per_pair: float  # one pair, one signal, one core: bench.search's "stored records"
    us_per_row: float  # the serial write of one stored row: bench.search_writes
    signals: int = 1  # confidence signals the dataset keeps ("max", and "margin")
    cores: int = 1  # cores the pair computation spreads over; 1: the search process alone


@dataclass(frozen=True)
class SearchRun:
    answers_at: float  # when the last batch ended: every base's best saver stored
    batches: int
    pairs: int  # (base, saver) pairs searched, each once per signal
    compute_s: float  # the batches' time computing pairs
    write_s: float  # the batches' time writing rows, in one process
    last_batch_s: float  # the last batch alone: how long the answers trail the last model


def zoo_pairs(costs: Sequence[float]) -> int:
    """The pairs a zoo has: every two models, less those of equal cost."""
    same = sum(n * (n - 1) // 2 for n in Counter(costs).values())
    return len(costs) * (len(costs) - 1) // 2 - same


def search_run(completions: Sequence[tuple[float, float]], costs: SearchCosts) -> SearchRun:
    """The search behind ``completions``: (when, cost) of each model, in the order they
    completed."""
    order = sorted(completions, key=lambda c: c[0])
    seen = 0
    seen_at_cost: Counter[float] = Counter()
    free_at = compute_s = write_s = last_batch_s = 0.0
    pairs_total = batches = taken = 0
    while taken < len(order):
        start = max(free_at, order[taken][0])
        pairs = 0
        while taken < len(order) and order[taken][0] <= start:
            cost = order[taken][1]
            pairs += seen - seen_at_cost[cost]
            seen += 1
            seen_at_cost[cost] += 1
            taken += 1
        computing = pairs * costs.signals * costs.ms_per_pair / 1000 / max(1, costs.cores)
        writing = pairs * costs.signals * ROWS_PER_PAIR * costs.us_per_row / 1e6
        free_at = start + computing + writing
        compute_s, write_s, last_batch_s = compute_s + computing, write_s + writing, free_at - start
        pairs_total += pairs
        batches += 1
    return SearchRun(free_at, batches, pairs_total, compute_s, write_s, last_batch_s)
