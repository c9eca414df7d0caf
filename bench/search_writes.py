"""What the saver search's serial half costs a stored row: ``python -m bench.search_writes``.

    python -m bench.search_writes [--models 400] [--measure-last 50] [--database-url URL]

A zoo of ``--models`` models (costs from ``search.synthetic.make_zoo``) completes one model at a
time, in a shuffled order, as in a sweep: each new model pairs with every model before it of
another cost, on the top-1 probability, six rows a pair (the five default budgets and the paper
criterion). The rows are written as the search writes a batch (``SaverSearch._compute_and_store``
after its pairs are computed): built as dictionaries, upserted (``db.upsert.upsert``), the best
savers updated (``search.best.update_best_savers``) and the transaction committed, one
transaction per model. The last ``--measure-last`` models are timed, when the table already holds
most of the zoo's rows: microseconds per row of each step and of the four together. That sum is
what stays in one process when the pair computation is spread over many cores (``bench.schedule
--write-us-per-row``).

The operating points are random (seed 0), not computed: the write's cost does not depend on
them, and how many best savers change does only a little. Not timed: the search's per-batch reads
(its lock, the zoo's new rows, obsolete pairs) and the models' scores, a row a model.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from cluster.settings import DEFAULT_BUDGETS
from db.models import Dataset, PairResult, utc_now
from db.queries import upsert_model
from db.schema import upgrade
from db.session import session_factory
from db.upsert import upsert
from search.best import update_best_savers
from search.criteria import MAX_PROBABILITY
from search.pairs import COLUMNS
from search.selection import centipoints
from search.service import PAIR_KEY, criterion_keys
from search.synthetic import make_zoo

STEPS = ("build rows", "upsert", "best savers", "commit")
# The stored values but the relative cost, which follows from the cost ratio and the exits.
POINT_COLUMNS = tuple(c for c in COLUMNS if c != "relative_cost")


def pairs_of_newcomer(costs: list[float], earlier: list[int], new: int) -> list[tuple[int, int]]:
    """The (base, saver) pairs a model completing after ``earlier`` brings: saver of every dearer
    earlier model, base of every cheaper one; none with a model of the same cost."""
    return [(b, new) for b in earlier if costs[b] > costs[new]] + [
        (new, s) for s in earlier if costs[s] < costs[new]
    ]


def pair_rows(
    pairs: list[tuple[int, int]],
    criteria: list[tuple[str, int]],
    dataset_id: int,
    ids: list[int],
    costs: list[float],
    rng: np.random.Generator,
) -> list[dict]:
    """Six rows a pair (one per criterion), with random operating points."""
    points = rng.random((len(pairs) * len(criteria), len(POINT_COLUMNS))).tolist()
    now = utc_now()
    rows = []
    for i, (base, saver) in enumerate(pairs):
        for j, (criterion, cp) in enumerate(criteria):
            point = points[i * len(criteria) + j]
            rows.append(
                {
                    "dataset_id": dataset_id,
                    "confidence": MAX_PROBABILITY,
                    "base_id": ids[base],
                    "saver_id": ids[saver],
                    "criterion": criterion,
                    "max_drop_centipoints": cp,
                    "relative_cost": costs[saver] / costs[base] + point[1],
                    **dict(zip(POINT_COLUMNS, point, strict=True)),
                    "computed_at": now,
                }
            )
    return rows


def measure(url: str, num_models: int, measure_last: int) -> dict:
    upgrade(url)
    sessions = session_factory(url)
    costs = [float(c) for c in make_zoo(num_models, 10, seed=3).gmacs]
    name = f"writes-{time.time_ns()}"
    with sessions.begin() as session:
        dataset = Dataset(
            name=name,
            num_samples=50_000,
            num_classes=1000,
            budgets_centipoints=[centipoints(b) for b in DEFAULT_BUDGETS],
        )
        session.add(dataset)
        session.flush()
        dataset_id = dataset.id
        criteria = criterion_keys(dataset)
        ids = [
            upsert_model(session, name=f"{name}-{row}", source="records", gmacs=cost).id
            for row, cost in enumerate(costs)
        ]
    order = list(range(num_models))
    random.Random(0).shuffle(order)
    rng = np.random.default_rng(0)
    seconds = dict.fromkeys(STEPS, 0.0)
    rows_timed = 0
    for position, new in enumerate(order):
        pairs = pairs_of_newcomer(costs, order[:position], new)
        with sessions.begin() as session:
            stored = session.get(Dataset, dataset_id)
            assert stored is not None
            began = time.perf_counter()
            rows = pair_rows(pairs, criteria, dataset_id, ids, costs, rng)
            built = time.perf_counter()
            upsert(session, PairResult, rows, key=PAIR_KEY)
            upserted = time.perf_counter()
            update_best_savers(session, stored, rows, set(), criteria)
            bested = time.perf_counter()
        committed = time.perf_counter()
        if position >= num_models - measure_last:
            rows_timed += len(rows)
            ends = (began, built, upserted, bested, committed)
            for step, start, end in zip(STEPS, ends, ends[1:], strict=False):
                seconds[step] += end - start
    per_row = {step: round(s / max(1, rows_timed) * 1e6, 1) for step, s in seconds.items()}
    return {
        "database": url.split(":")[0].split("+")[0],
        "models": num_models,
        "rows timed": rows_timed,
        **{f"{step} us/row": us for step, us in per_row.items()},
        "serial us/row": round(sum(per_row.values()), 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.search_writes", description=__doc__)
    parser.add_argument("--models", type=int, default=400)
    parser.add_argument("--measure-last", type=int, default=50)
    parser.add_argument("--database-url", help="Default: a new SQLite file.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="saverzoo-writes-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'writes.db'}"
        result = measure(url, args.models, args.measure_last)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores")
    print(", ".join(f"{k} {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
