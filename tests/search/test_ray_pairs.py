"""The saver search's pairs as Ray tasks: every stored row the same as the in-process search's,
whether the zoo is searched at once or model by model, on both confidence signals, with heavy
confidence ties."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import aliased

from cluster.ray_cluster import connected
from db.models import BestSaver, Dataset, Model, ModelScore, PairResult
from db.queries import get_dataset
from db.schema import upgrade
from db.session import session_factory
from orchestrator.ingest.records_import import import_records
from search.ray_pairs import MIN_BLOCK_PAIRS, plan_blocks
from search.service import SaverSearch, add_signal

BUDGETS = [0.0, 0.5, 1.0, 2.0]
PAIR_COLUMNS = [
    c.name
    for c in PairResult.__table__.columns
    if c.name not in {"id", "dataset_id", "base_id", "saver_id", "computed_at"}
]


def tied_records(directory: Path, models: int, samples: int, names: list[str], seed: int = 5):
    """Top-2 records whose probabilities lie on a coarse grid: many confidences and margins tie."""
    rng = np.random.default_rng(seed)
    gmacs = np.sort(rng.uniform(0.1, 20, models))
    labels = rng.integers(0, 10, samples)
    skill = np.sort(rng.uniform(0.3, 0.95, models))
    info = {}
    directory.mkdir(parents=True, exist_ok=True)
    for row in range(models):
        name = f"tied{row:02d}"
        right = rng.random(samples) < skill[row]
        first = np.where(right, labels, (labels + 1) % 10)
        p1 = np.round(0.3 + 0.4 * right + 0.3 * rng.random(samples), 1)
        p2 = np.round(p1 * rng.choice([0.0, 0.25, 0.5, 1.0], samples) * (1.2 - right), 2)
        if name not in names:
            continue
        np.savez(
            directory / f"{name}_test.npz",
            label=labels[:, None],
            preds=np.stack([first, (first + 3) % 10], axis=1)[None],
            confs=np.stack([p1, p2], axis=1)[None].astype(np.float32),
        )
        info[name] = {"macs": float(gmacs[row] * 1e9), "params": 1e6}
    (directory / "complexity_info.json").write_text(json.dumps(info))
    return directory


def stored_rows(url: str, dataset: str) -> dict[str, list]:
    """Every pair, best saver and score of ``dataset``, by model names, without ids or times."""
    sessions = session_factory(url)
    base, saver = aliased(Model), aliased(Model)
    with sessions.begin() as session:
        dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == dataset))
        pairs = session.execute(
            select(base.name, saver.name, *[PairResult.__table__.c[c] for c in PAIR_COLUMNS])
            .join(base, base.id == PairResult.base_id)
            .join(saver, saver.id == PairResult.saver_id)
            .where(PairResult.dataset_id == dataset_id)
        ).all()
        best = session.execute(
            select(
                base.name,
                saver.name,
                BestSaver.criterion,
                BestSaver.max_drop_centipoints,
                BestSaver.selection,
                BestSaver.confidence,
            )
            .join(PairResult, PairResult.id == BestSaver.pair_id)
            .join(base, base.id == BestSaver.base_id)
            .join(saver, saver.id == PairResult.saver_id)
            .where(BestSaver.dataset_id == dataset_id)
        ).all()
        scores = session.execute(
            select(Model.name, ModelScore.correct, ModelScore.holdout_correct)
            .join(Model, Model.id == ModelScore.model_id)
            .where(ModelScore.dataset_id == dataset_id)
        ).all()
    return {"pairs": sorted(pairs), "best": sorted(best), "scores": sorted(scores)}


@pytest.fixture(scope="module")
def ray_cluster():
    """An embedded Ray with two CPUs for the whole module (starting one takes seconds)."""
    with connected(None, num_cpus=2):
        yield


def search_into(url: str, directory: Path, dataset: str, search: SaverSearch, steps: list):
    """Import the records of ``steps`` (lists of model names) one after the other, then keep the
    margin signal too (which computes every pair on it)."""
    sessions = session_factory(url)
    for names in steps:
        tied_records(directory, 14, 600, names)
        with sessions.begin() as session:
            import_records(
                session, directory, dataset, budgets=BUDGETS, holdout_fraction=0.5, search=search
            )
    with sessions.begin() as session:
        add_signal(session, get_dataset(session, dataset), "margin", search)


def test_blocks_hold_every_pair_once_in_order():
    wanted = {s: list(range(s + 1, 40)) for s in range(39)}
    for cpus in (1, 2, 64):
        blocks = plan_blocks(wanted, cpus)
        flat = [(s, b) for block in blocks for s, bases in block for b in bases]
        assert flat == [(s, b) for s, bases in wanted.items() for b in bases]
        sizes = [sum(len(bases) for _, bases in block) for block in blocks]
        assert all(size >= MIN_BLOCK_PAIRS for size in sizes[:-1])
    assert len(plan_blocks({0: list(range(1, 10_001))}, 4)) == 16  # a saver may span blocks


@pytest.mark.ray
@pytest.mark.slow
def test_ray_search_stores_the_rows_of_the_in_process_search(database_url, tmp_path, ray_cluster):
    from search.ray_pairs import RayPairs

    upgrade(database_url)
    names = [f"tied{i:02d}" for i in range(14)]
    search_into(database_url, tmp_path / "a", "here", SaverSearch(), [names])
    steps = [names[::2], names, names]  # half, the rest one update later, then nothing new
    search_into(database_url, tmp_path / "b", "ray", SaverSearch(pairs=RayPairs()), steps)
    here, ray = stored_rows(database_url, "here"), stored_rows(database_url, "ray")
    assert len(here["pairs"]) == 2 * 13 * 14 // 2 * (len(BUDGETS) + 1)
    assert {row.confidence for row in ray["pairs"]} == {"max", "margin"}
    assert here == ray


@pytest.mark.ray
@pytest.mark.slow
def test_ray_columns_equal_in_process_columns_across_base_chunks(ray_cluster):
    """More models than one chunk of bases holds, added in two steps: the same columns."""
    from search.engine import Zoo
    from search.pairs import COLUMNS, SplitZoo, calibration_mask
    from search.ray_pairs import BASE_CHUNK, RayPairs
    from search.service import LOCAL_PAIRS
    from search.synthetic import make_zoo

    models = BASE_CHUNK * 2 + 5
    synthetic = make_zoo(models, 300, seed=4, decimals=2)
    zoo = Zoo.from_predictions(
        synthetic.names,
        synthetic.gmacs,
        synthetic.predictions,
        synthetic.confidence,
        synthetic.labels,
    )
    mask = calibration_mask(f"{i:05d}" for i in range(300))
    first = BASE_CHUNK + 3
    here, there = SplitZoo(zoo, mask), None
    ray_pairs = RayPairs()
    for grown in (first, models):
        part = Zoo(
            zoo.names[:grown], zoo.costs[:grown], zoo.correct[:grown], zoo.confidence[:grown]
        )
        if there is None:
            there = SplitZoo(part, mask)
        else:
            there.add(
                Zoo(
                    zoo.names[first:],
                    zoo.costs[first:],
                    zoo.correct[first:],
                    zoo.confidence[first:],
                )
            )
        wanted = {
            s: [b for b in range(grown) if zoo.costs[b] > zoo.costs[s]] for s in range(grown - 1)
        }
        budgets = [0, 50, 100]
        expected = LOCAL_PAIRS.columns(here, wanted, budgets)
        found = ray_pairs.columns(there, wanted, budgets)
        assert [(s, b) for s, bases, _ in found for b in bases] == [
            (s, b) for s, bases, _ in expected for b in bases
        ]
        for name in COLUMNS:
            joined = [np.concatenate([getattr(c, name) for *_, c in x]) for x in (expected, found)]
            assert np.array_equal(*joined, equal_nan=True), name
