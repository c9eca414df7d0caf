"""Latency as the cost: stored GMACs pair results re-costed, and `savers best --cost latency`."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import aliased

from db.models import Model, ModelThroughput, PairResult
from db.session import session_factory
from search.costs import latency_per_image, recost_pair, recost_saving
from search.criteria import MAX_PROBABILITY
from search.engine import budget_point, paper_point, scan_saver
from search.pairs import SplitZoo, calibration_mask, criteria_of, pair_columns, pair_rows
from search.selection import Candidate, best_candidate, rank_key
from tests.factories import engine_zoo, records_dir, saverzoo, saverzoo_json, small_zoo

DEVICE = "NVIDIA H200"
PROPORTIONAL = "proportional-gpu"  # latencies proportional to GMACs


def reordering_latencies(zoo) -> np.ndarray:
    """Seconds per image that reorder the zoo: the cheapest model in GMACs is the slowest."""
    latency = np.asarray(zoo.gmacs, dtype=np.float64) * 1e-3
    latency[[1, 2]] = latency[[2, 1]]  # two cheap models swap places
    latency[0] = 10 * latency.max()
    return latency


# ----- re-costing is the search with other costs --------------------------------------------
def test_recosting_gmacs_results_equals_searching_with_latency_costs():
    zoo = small_zoo(num_models=5, num_samples=300, seed=7)
    gmacs_zoo = engine_zoo(zoo)
    latency = reordering_latencies(zoo)
    latency_zoo = dataclasses.replace(gmacs_zoo, costs=latency)
    calibration = calibration_mask([f"sample{i}" for i in range(len(zoo.labels))])
    gmacs_split, latency_split = (
        SplitZoo(gmacs_zoo, calibration),
        SplitZoo(latency_zoo, calibration),
    )
    budgets = [0, 50, 200]

    def rows(split: SplitZoo, saver: int, bases: list[int]) -> list[dict]:
        columns = pair_columns(split.saver_side(saver), split.base_side(bases), budgets)
        return pair_rows(columns, bases, saver, 0, MAX_PROBABILITY, None, criteria_of(budgets))

    checked = 0
    for saver in range(len(zoo.names)):
        bases = [b for b in range(len(zoo.names)) if b != saver]  # any ratio, either way round
        by_gmacs = rows(gmacs_split, saver, bases)
        by_latency = rows(latency_split, saver, bases)
        for g_row, lat_row in zip(by_gmacs, by_latency, strict=True):
            # The operating point does not depend on the costs ...
            for column in ("threshold", "exit_ratio", "accuracy", "holdout_threshold"):
                assert g_row[column] == lat_row[column]
            # ... so re-costing the GMACs row gives what the latency search gives.
            ratio = latency[g_row["saver_id"]] / latency[g_row["base_id"]]
            recosted = recost_pair(g_row, ratio)
            # The paper criterion's stored ΔC is the seed's arithmetic, re-costing plain
            # arithmetic: the same number to the last bit or two.
            exact = g_row["criterion"] != "paper"
            assert recosted["saving"] == (
                lat_row["saving"] if exact else pytest.approx(lat_row["saving"], abs=1e-12)
            )
            assert recosted["relative_cost"] == lat_row["relative_cost"]
            assert recosted["holdout_saving"] == lat_row["holdout_saving"]
            assert recosted["holdout_calibration_saving"] == pytest.approx(
                lat_row["holdout_calibration_saving"], abs=1e-12
            )
            checked += 1
    assert checked == 5 * 4 * (len(budgets) + 1)


def test_recost_saving_shifts_by_the_difference_of_the_ratios():
    assert recost_saving(0.25, 0.1, 0.3) == pytest.approx(0.05)
    assert latency_per_image(200.0) == 0.005
    with pytest.raises(ValueError, match="positive"):
        latency_per_image(0.0)


# ----- through the database and the CLI -----------------------------------------------------
def import_zoo(url: str, tmp_path, zoo, latency: np.ndarray | None, device: str = DEVICE) -> None:
    imported = saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")
    assert imported.exit_code == 0, imported.output
    if latency is not None:
        set_latencies(url, zoo, latency, device)


def set_latencies(url: str, zoo, latency: np.ndarray, device: str = DEVICE) -> None:
    with session_factory(url).begin() as session:
        ids = dict(session.execute(select(Model.name, Model.id)).all())
        session.execute(delete(ModelThroughput).where(ModelThroughput.device_type == device))
        for name, seconds in zip(zoo.names, latency, strict=True):
            session.add(
                ModelThroughput(
                    model_id=ids[name], device_type=device, batch_size=64, images_per_s=1 / seconds
                )
            )


def best_by_latency(*args: str, device: str = DEVICE) -> list[dict]:
    return saverzoo_json(
        "savers", "best", "--dataset", "val", *args, "--cost", "latency", "--device-type", device
    )


def brute_force(url: str, zoo, latency: np.ndarray, criterion: str, cp: int, holdout: bool):
    """Best saver per base straight from the stored rows, re-costed by hand."""
    # As stored and read back: images/s = 1 / latency, latency = 1 / images/s.
    lat = {name: float(1 / (1 / s)) for name, s in zip(zoo.names, latency, strict=True)}
    gmacs = dict(zip(zoo.names, zoo.gmacs.tolist(), strict=True))
    base, saver = aliased(Model), aliased(Model)
    with session_factory(url).begin() as session:
        rows = session.execute(
            select(base.name, saver.name, PairResult)
            .join(base, base.id == PairResult.base_id)
            .join(saver, saver.id == PairResult.saver_id)
            .where(PairResult.criterion == criterion, PairResult.max_drop_centipoints == cp)
        ).all()
        candidates = {}
        for b, s, pair in rows:
            if not lat[s] < lat[b]:
                continue
            shift = gmacs[s] / gmacs[b] - lat[s] / lat[b]
            saving = (pair.holdout_calibration_saving if holdout else pair.saving) + shift
            accuracy = pair.holdout_calibration_accuracy if holdout else pair.accuracy
            key = rank_key(criterion, saving, accuracy, lat[s], s)
            candidates[b] = min(candidates.get(b, (key, s, saving)), (key, s, saving))
    return {
        b: (s if criterion == "paper" or round(saving, 12) > 0 else None)
        for b, (_, s, saving) in candidates.items()
    }


def test_latency_picks_through_the_cli(use_database, tmp_path):
    zoo = small_zoo()
    latency = reordering_latencies(zoo)
    import_zoo(use_database, tmp_path, zoo, latency)
    set_latencies(use_database, zoo, 2.5e-3 * zoo.gmacs, device=PROPORTIONAL)
    lat = dict(zip(zoo.names, latency.tolist(), strict=True))

    changed = 0
    for args, criterion, cp, holdout in [
        ([], "budget", 0, False),
        (["--max-drop", "2"], "budget", 200, False),
        (["--criterion", "paper"], "paper", 0, False),
        (["--holdout"], "budget", 0, True),
    ]:
        by_gmacs = saverzoo_json("savers", "best", "--dataset", "val", *args)

        # Latencies proportional to GMACs: the same savers, with the same numbers.
        proportional = best_by_latency(*args, device=PROPORTIONAL)
        assert [r["base"] for r in proportional] == [r["base"] for r in by_gmacs] == zoo.names
        for g, p in zip(by_gmacs, proportional, strict=True):
            assert set(p) == set(g) and p["saver"] == g["saver"], args
            for field, value in g.items():
                if isinstance(value, float):
                    assert p[field] == pytest.approx(value, abs=1e-9), (args, field)
                else:
                    assert p[field] == value
        assert any(r["saver"] for r in proportional)

        # Latencies that reorder the zoo: the pick a brute force over the stored rows predicts.
        rows = best_by_latency(*args)
        expected = brute_force(use_database, zoo, latency, criterion, cp, holdout)
        assert [r["base"] for r in rows] == sorted(zoo.names, key=lat.get)  # fastest first
        for row, g in zip(rows, sorted(by_gmacs, key=lambda r: lat[r["base"]]), strict=True):
            assert set(row) == set(g)
            assert row["saver"] == expected.get(row["base"]), (args, row)
            if row["saver"] is not None:
                assert lat[row["saver"]] < lat[row["base"]]  # never a slower saver
                assert row["saver"] != zoo.names[0]  # the slowest model saves nobody
            changed += row["saver"] != g["saver"]
    assert changed  # the reordering matters

    # In-sample picks are those of the engine run with latency costs from the start.
    ez = engine_zoo(zoo)
    lz = dataclasses.replace(ez, costs=latency)
    for args, criterion in [([], "budget"), (["--criterion", "paper"], "paper")]:
        rows = {r["base"]: r for r in best_by_latency(*args)}
        for base in range(len(zoo.names)):
            candidates = []
            for saver in np.flatnonzero((ez.costs < ez.costs[base]) & (latency < latency[base])):
                scan = scan_saver(lz, int(saver), [base], [0.0])
                point = (
                    budget_point(lz, scan, 0, 0)
                    if criterion == "budget"
                    else paper_point(lz, scan, 0)
                )
                candidates.append(Candidate(zoo.names[saver], float(latency[saver]), point))
            best = best_candidate(candidates, criterion)
            row = rows[zoo.names[base]]
            assert row["saver"] == (best.saver if best else None)
            if best and criterion == "budget":
                assert row["saving"] == pytest.approx(best.point.saving, abs=1e-12)
            if best and criterion == "paper":
                assert row["delta_c"] == pytest.approx(best.point.delta_c, abs=1e-12)


def test_bases_without_a_measurement_come_last_without_a_saver(use_database, tmp_path):
    zoo = small_zoo()
    latency = 2.5e-3 * zoo.gmacs
    import_zoo(use_database, tmp_path, zoo, latency)
    unmeasured = zoo.names[-1]
    with session_factory(use_database).begin() as session:
        model_id = session.scalar(select(Model.id).where(Model.name == unmeasured))
        session.execute(delete(ModelThroughput).where(ModelThroughput.model_id == model_id))

    result = saverzoo(
        "savers", "best", "--dataset", "val", "--cost", "latency", "--device-type", DEVICE, "--json"
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[-1]["base"] == unmeasured and rows[-1]["saver"] is None
    assert "1 of 6 bases have no throughput measured" in result.stderr
    assert [r["base"] for r in rows[:-1]] == zoo.names[:-1]

    table = saverzoo(
        "savers", "best", "--dataset", "val", "--cost", "latency", "--device-type", DEVICE
    )
    assert table.exit_code == 0, table.output
    # Tab-separated (not a terminal): the rows on stdout, the title and the notes on stderr.
    assert f"cost: latency on {DEVICE}" in table.stderr
    assert "1 of 6 bases have no throughput measured" in table.stderr

    [one] = best_by_latency(zoo.names[-2])
    assert one == rows[-2]


def test_bad_cost_options_fail_with_one_line(use_database, tmp_path):
    zoo = small_zoo()
    import_zoo(use_database, tmp_path, zoo, 2.5e-3 * zoo.gmacs)
    set_latencies(use_database, zoo, 1e-2 * zoo.gmacs, device="cpu")
    known = "(measured for 'val': 'NVIDIA H200', 'cpu')"

    for args, message in [
        (["--cost", "latency"], f"--cost latency needs --device-type {known}"),
        (
            ["--cost", "latency", "--device-type", "TPU v5"],
            f"no throughput measured on device type 'TPU v5' {known}",
        ),
        (["--cost", "joules"], "cost must be 'gmacs' or 'latency'"),
        (["--device-type", "cpu"], "it needs --cost latency"),
    ]:
        result = saverzoo("savers", "best", "--dataset", "val", *args)

        assert result.exit_code == 1, args
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
