"""Benchmarks of the saver search (not tests): ``python -m bench.search``.

1. Engine: milliseconds per (base, saver) pair at N samples, amortised over a whole zoo (the sort
   of each saver's confidences included), for one budget, for the default budgets plus the paper
   criterion, and for everything the service stores (in-sample and held-out): the per-record
   path it once took (``tests.search.records_oracle``), the columns (``search.pairs``) and the
   columns with their row dicts. Then the same with numba on one thread, as a ratio.
2. Service: seconds to add one model to zoos of 100 and 1,000 models whose predictions are in an
   SQLite database (``--database-url`` for another), warm (a long-lived process that already holds
   the zoo) and cold (a new process that first reads the zoo); and the zoo's load alone, from the
   prediction chunks with every model's confidences sorted, or as stored search arrays
   (``db.search_arrays``).
3. Three-model cascades (``--chains M``): a zoo of M models imported as records (every pair
   searched), then every base's chains searched (``search.chain_service.refresh_chains``, K = 5
   candidates a stage, the default budgets), then searched again with nothing changed.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

from cluster.settings import DEFAULT_BUDGETS
from search.engine import Zoo, scan_saver, sort_saver
from search.pairs import (
    SplitZoo,
    calibration_mask,
    criteria_of,
    pair_columns,
    pair_rows,
)
from search.synthetic import make_zoo

BUDGETS_CP = [round(b * 100) for b in DEFAULT_BUDGETS]
CRITERIA = criteria_of(BUDGETS_CP)


def _zoo(num_models: int, num_samples: int, seed: int = 0) -> Zoo:
    zoo = make_zoo(num_models, num_samples, seed=seed)
    return Zoo.from_predictions(zoo.names, zoo.gmacs, zoo.predictions, zoo.confidence, zoo.labels)


def engine_ms_per_pair(
    num_models: int, num_samples: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Milliseconds per pair by ``clock`` (wall-clock by default)."""
    zoo = _zoo(num_models, num_samples)
    savers = range(num_models - 1)
    bases = {s: np.flatnonzero(zoo.costs > zoo.costs[s]) for s in savers}
    num_pairs = sum(len(b) for b in bases.values())
    scan_saver(zoo, 0, bases[0][:1], [0.0])  # compile (or load the cached compilation)
    results = {}
    for label, budgets in (("1 budget", [0.0]), ("5 budgets + paper", list(DEFAULT_BUDGETS))):
        start = clock()
        for saver in savers:
            scan_saver(zoo, saver, bases[saver], budgets, sort_saver(zoo, saver))
        results[label] = (clock() - start) / num_pairs * 1e3
    keys = [f"{i:08d}" for i in range(num_samples)]
    calibration = calibration_mask(keys)
    warm = SplitZoo(zoo, calibration)
    pair_columns(warm.saver_side(0), warm.base_side(bases[0][:1]), BUDGETS_CP)  # compile
    pair_columns(warm.saver_side(0), warm.base_side(bases[0]), BUDGETS_CP)
    for label, stored in (
        ("stored records, per record (the old path, rows built)", _per_record),
        ("stored columns (in-sample + held-out)", _columns),
        ("stored columns + rows built", _rows),
    ):
        zoos = SplitZoo(zoo, calibration)  # nothing sorted yet: every saver's sort is timed
        start = clock()
        for saver in savers:
            stored(zoos, saver, bases[saver])
        results[label] = (clock() - start) / num_pairs * 1e3
    return results


def _per_record(zoos: SplitZoo, saver: int, bases: np.ndarray) -> None:
    """The search as it stored pairs before the columns (kept as the tests' reference): each half
    sorted again, a record per row, a row per record."""
    from tests.search.records_oracle import reference_rows

    halves = (zoos.calibration, zoos.evaluation)
    reference_rows(zoos.full, _NO_MASK, saver, bases.tolist(), BUDGETS_CP, halves=halves)


_NO_MASK = np.zeros(0, dtype=bool)  # unused: the halves are given


def _columns(zoos: SplitZoo, saver: int, bases: np.ndarray) -> None:
    pair_columns(zoos.saver_side(saver), zoos.base_side(bases), BUDGETS_CP)


def _rows(zoos: SplitZoo, saver: int, bases: np.ndarray) -> None:
    columns = pair_columns(zoos.saver_side(saver), zoos.base_side(bases), BUDGETS_CP)
    pair_rows(columns, bases.tolist(), saver, 1, "max_probability", None, CRITERIA)


def service_add_one_model(num_models: int, num_samples: int, database_url: str | None) -> dict:
    """Zoo of ``num_models - 1`` models in the database, then time adding the last one."""
    from sqlalchemy import select

    from db.models import Dataset
    from db.queries import add_shard, store_chunk, upsert_model
    from db.queries import keys_digest as digest_of
    from db.schema import upgrade
    from db.session import session_factory
    from search.selection import centipoints
    from search.service import SaverSearch

    synthetic = make_zoo(num_models, num_samples, seed=1)
    workdir = Path(tempfile.mkdtemp(prefix="saverzoo-bench-"))
    url = database_url or f"sqlite:///{workdir / 'bench.db'}"
    upgrade(url)  # a benchmark database: migrate it whatever its state
    sessions = session_factory(url)
    keys = [f"{i:08d}" for i in range(num_samples)]
    dataset_name = f"bench-{num_models}-{time.time_ns()}"
    newcomer = num_models // 2  # a mid-cost model: base of half the zoo, saver of the other half
    with sessions.begin() as session:
        dataset = Dataset(
            name=dataset_name,
            num_samples=num_samples,
            num_classes=1000,
            budgets_centipoints=[centipoints(b) for b in DEFAULT_BUDGETS],
        )
        session.add(dataset)
        session.flush()
        add_shard(session, dataset, 0, keys, synthetic.labels)

    def store(session, dataset, row):
        model = upsert_model(
            session,
            name=f"{dataset_name}-{synthetic.names[row]}",
            source="records",
            gmacs=float(synthetic.gmacs[row]),
        )
        store_chunk(
            session,
            model=model,
            dataset=dataset,
            shard_index=0,
            keys_digest_=digest_of(keys),
            topk_classes=synthetic.predictions[row][:, None],
            topk_probs=synthetic.confidence[row][:, None],
        )
        return model.id

    with sessions.begin() as session:
        dataset = session.scalars(select(Dataset).where(Dataset.name == dataset_name)).one()
        for row in range(num_models):
            if row != newcomer:
                store(session, dataset, row)
    search = SaverSearch()
    start = time.perf_counter()
    with sessions.begin() as session:
        dataset = session.scalars(select(Dataset).where(Dataset.name == dataset_name)).one()
        search.warm(session, dataset)
        # Load (or compile) the kernels, as a long-lived service would have done already.
        warm_kernels = SplitZoo(_zoo(30, 1000), calibration_mask([f"{i}" for i in range(1000)]))
        for warm_bases in ([1], np.arange(1, 30)):  # the serial and the parallel kernel
            pair_columns(warm_kernels.saver_side(0), warm_kernels.base_side(warm_bases), BUDGETS_CP)
    warm_up = time.perf_counter() - start
    with sessions.begin() as session:
        dataset = session.scalars(select(Dataset).where(Dataset.name == dataset_name)).one()
        model_id = store(session, dataset, newcomer)
    start = time.perf_counter()
    with sessions.begin() as session:
        dataset = session.scalars(select(Dataset).where(Dataset.name == dataset_name)).one()
        summary = search.models_completed(session, dataset, [model_id])
    warm = time.perf_counter() - start
    with sessions.begin() as session:  # cold: a fresh service must read and sort the zoo first
        dataset = session.scalars(select(Dataset).where(Dataset.name == dataset_name)).one()
        start = time.perf_counter()
        SaverSearch().models_completed(session, dataset, [model_id])
        cold = time.perf_counter() - start
        session.rollback()
    return {
        "models": num_models,
        "pairs": summary.pairs_computed,
        "rows written": summary.rows_written,
        "warm add (s)": warm,
        "cold add (s)": cold,
        "zoo load + sort (s)": warm_up,
        **zoo_load(sessions, dataset_name),
    }


def zoo_load(sessions, dataset_name: str) -> dict:
    """Seconds to read a dataset's whole zoo (correctness, top-1 probability, each model's
    confidence order): from the prediction chunks and sorted, or as stored search arrays."""
    from db.queries import complete_model_ids, dataset_labels, get_dataset, top1_predictions
    from db.search_arrays import confidence_order, load_search_arrays
    from search.criteria import MAX_PROBABILITY

    def timed(load) -> float:
        with sessions.begin() as session:
            dataset = get_dataset(session, dataset_name)
            start = time.perf_counter()
            labels = dataset_labels(session, dataset)
            load(session, dataset, complete_model_ids(session, dataset), labels)
            return time.perf_counter() - start

    def from_chunks(session, dataset, model_ids, labels) -> None:
        classes, confidence = top1_predictions(session, dataset, model_ids, MAX_PROBABILITY)
        np.ascontiguousarray(classes == labels, dtype=np.uint8)
        for row in range(len(model_ids)):
            confidence_order(confidence[row])

    def stored(session, dataset, model_ids, labels) -> None:
        load_search_arrays(session, dataset, model_ids, MAX_PROBABILITY, labels)

    return {
        "zoo load from chunks + sort (s)": timed(from_chunks),
        "zoo load, arrays derived and stored (s)": timed(stored),
        "zoo load, arrays stored (s)": timed(stored),
    }


def three_stage(num_models: int, num_samples: int, database_url: str | None) -> dict:
    from db.queries import get_dataset
    from db.schema import upgrade
    from db.session import session_factory
    from orchestrator.ingest.records_import import import_records
    from search.chain_service import refresh_chains
    from search.criteria import DEFAULT_CANDIDATES
    from search.results import chain_savers
    from search.service import SaverSearch
    from search.synthetic import write_records

    workdir = Path(tempfile.mkdtemp(prefix="saverzoo-bench-"))
    records = write_records(make_zoo(num_models, num_samples, seed=2), workdir / "records")
    url = database_url or f"sqlite:///{workdir / 'bench.db'}"
    upgrade(url)
    sessions, search = session_factory(url), SaverSearch()
    name = f"chains-{num_models}-{time.time_ns()}"
    start = time.perf_counter()
    with sessions.begin() as session:
        import_records(
            session,
            records,
            name,
            budgets=list(DEFAULT_BUDGETS),
            holdout_fraction=0.5,
            search=search,
        )
    pairs_s = time.perf_counter() - start
    timings = []
    for _ in range(2):  # the first searches every base; the second finds nothing changed
        start = time.perf_counter()
        with sessions.begin() as session:
            summary = refresh_chains(session, get_dataset(session, name), search)
        timings.append((time.perf_counter() - start, summary))
    with sessions.begin() as session:
        rows = chain_savers(
            session,
            get_dataset(session, name),
            max_drop_centipoints=0,
            candidates=DEFAULT_CANDIDATES,
        )
    (first_s, first), (again_s, again) = timings
    return {
        "models": num_models,
        "pairs + import (s)": pairs_s,
        "chains walked": first.chains_walked,
        "chains search (s)": first_s,
        "ms per chain": 1000 * first_s / max(first.chains_walked, 1),
        "nothing changed (s)": again_s,
        "searched again": again.searched,
        "bases a chain saves more (0 pts)": sum(len(r["chain"]) == 2 for r in rows),
        "bases with a pair": sum(len(r["chain"]) == 1 for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--engine-models", type=int, default=200)
    parser.add_argument("--zoos", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--chains", type=int, default=0, help="Zoo size of the three-stage run.")
    parser.add_argument("--chain-samples", type=int, default=10_000)
    args = parser.parse_args()
    if args.chains:
        result = three_stage(args.chains, args.chain_samples, args.database_url)
        print(
            "three-model cascades: "
            + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
            )
        )
        return
    print(
        f"machine: {platform.processor() or platform.machine()}, numba threads "
        f"{numba.get_num_threads()}, N = {args.samples:,}"
    )
    for label, ms in engine_ms_per_pair(args.engine_models, args.samples).items():
        print(f"engine, {label}: {ms:.4f} ms per pair ({args.engine_models}-model zoo)")
    # One core: numba on one thread, timed by the process's CPU time (on a shared machine the
    # wall clock also counts the time other processes held the core).
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    one_core = engine_ms_per_pair(args.engine_models, args.samples, time.process_time)
    numba.set_num_threads(threads)
    old = one_core["stored records, per record (the old path, rows built)"]
    new = one_core["stored columns (in-sample + held-out)"]
    with_rows = one_core["stored columns + rows built"]
    print(
        f"engine, one core (numba threads 1, CPU time), everything stored: per record {old:.4f}, "
        f"columns {new:.4f} ({old / new:.1f}x faster), columns + row dicts {with_rows:.4f} "
        f"({old / with_rows:.1f}x faster) ms per pair"
    )
    for num_models in args.zoos:
        result = service_add_one_model(num_models, args.samples, args.database_url)
        print(
            "add one model: "
            + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
            )
        )


if __name__ == "__main__":
    main()
