"""Margin confidence: a sample exits at the saver where its top-1 probability minus its top-2 is
above the threshold. Checked against a brute force over every threshold, on random zoos whose
margins tie often."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search.engine import min_correct_diff
from tests.factories import records_dir, saverzoo, saverzoo_json, small_zoo

NAMES = [f"m{i}" for i in range(6)]


def top2_records(directory, seed: int, names=NAMES, samples: int = 200):
    """TinySaver records with the top two classes and probabilities (on a coarse grid)."""
    rng = np.random.default_rng(seed)
    gmacs = np.sort(rng.uniform(0.1, 10, len(NAMES)))
    labels = rng.integers(0, 10, samples)
    directory.mkdir(parents=True, exist_ok=True)
    skill = np.sort(rng.uniform(0.4, 0.95, len(NAMES)))  # dearer models are more accurate
    truth = {}
    info = {}
    for row, name in enumerate(NAMES):
        right = rng.random(samples) < skill[row]
        first = np.where(right, labels, (labels + 1) % 10)
        p1 = np.round(0.3 + 0.4 * right + 0.3 * rng.random(samples), 1)  # surer where right
        p2 = np.round(p1 * rng.choice([0.0, 0.25, 0.5, 1.0], samples) * (1.2 - right), 2)
        margin = p1.astype(np.float32) - p2.astype(np.float32)  # as stored: float32 probabilities
        truth[name] = (right, margin, gmacs[row])
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
    return directory, truth


def brute_force_best(truth: dict, base: str, drop: float):
    """(saver, saving) of the largest saving over every cheaper saver and threshold; ``truth``:
    each model's (correct, confidence, GMACs)."""
    right_b, _, cost_b = truth[base]
    n = len(right_b)
    needed = int(right_b.sum()) + min_correct_diff(drop, n)
    best = None
    for saver, (right_s, margin, cost_s) in truth.items():
        if not cost_s < cost_b:
            continue
        for t in [*np.unique(margin.astype(np.float64)), -1.0]:
            exits = margin.astype(np.float64) > t
            correct = int(np.where(exits, right_s, right_b).sum())
            if correct < needed:
                continue
            saving = exits.mean() - cost_s / cost_b
            key = (round(saving, 12), correct, -cost_s)
            if best is None or key > best[0]:
                best = (key, saver, saving)
    if best is None or best[2] <= 1e-12:
        return None, None
    return best[1], best[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("drop", ["0", "1"])
def test_margin_answers_equal_the_brute_force(use_database, tmp_path, seed, drop):
    directory, truth = top2_records(tmp_path / "records", seed)
    assert saverzoo("records", "import", directory, "--dataset", "val").exit_code == 0
    rows = saverzoo_json(
        "savers", "best", "--dataset", "val", "--confidence", "margin", "--max-drop", drop
    )
    differs = 0
    for row in rows:
        saver, saving = brute_force_best(truth, row["base"], float(drop))
        assert row["saver"] == saver, row
        if saver is not None:
            assert row["saving"] == pytest.approx(saving, abs=1e-12)
            exits = truth[saver][1].astype(np.float64) > row["threshold"]
            assert exits.mean() == pytest.approx(row["exit_ratio"])
    top1 = saverzoo_json("savers", "best", "--dataset", "val", "--max-drop", drop)
    differs = sum(
        a["saver"] != b["saver"] or a["saving"] != b["saving"]
        for a, b in zip(rows, top1, strict=True)
    )
    assert differs > 0  # the margin is another signal than the top-1 probability


def test_margin_pairs_are_kept_up_to_date_as_models_arrive(use_database, tmp_path):
    first, _ = top2_records(tmp_path / "a", 0, names=NAMES[:3])
    assert saverzoo("records", "import", first, "--dataset", "val").exit_code == 0
    saverzoo_json("savers", "best", "--dataset", "val", "--confidence", "margin")  # now kept
    rest, _ = top2_records(tmp_path / "b", 0, names=NAMES[3:])
    assert saverzoo("records", "import", rest, "--dataset", "val").exit_code == 0
    everything, _ = top2_records(tmp_path / "c", 0)
    assert saverzoo("records", "import", everything, "--dataset", "fresh").exit_code == 0
    for options in ([], ["--holdout"], ["--criterion", "paper"]):
        incremental = saverzoo_json(
            "savers", "best", "--dataset", "val", "--confidence", "margin", *options
        )
        fresh = saverzoo_json(
            "savers", "best", "--dataset", "fresh", "--confidence", "margin", *options
        )
        assert incremental == fresh, options


def test_margin_needs_the_top_two_probabilities(use_database, tmp_path):
    top1_only = records_dir(tmp_path, small_zoo())
    assert saverzoo("records", "import", top1_only, "--dataset", "val").exit_code == 0
    result = saverzoo("savers", "best", "--dataset", "val", "--confidence", "margin")
    assert result.exit_code == 1
    assert "has only its top-1 probability stored" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert saverzoo_json("datasets", "list")[0]["name"] == "val"  # nothing else changed
    refused = saverzoo("savers", "best", "--dataset", "val", "--confidence", "top5")
    assert (
        refused.exit_code == 1
        and "confidence must be 'max' (the top-1 probability), 'margin'" in refused.stderr
    )


def test_show_and_curve_take_the_margin_too(use_database, tmp_path):
    directory, truth = top2_records(tmp_path / "records", 1)
    saverzoo("records", "import", directory, "--dataset", "val")
    best = {
        r["base"]: r
        for r in saverzoo_json("savers", "best", "--dataset", "val", "--confidence", "margin")
    }
    base = NAMES[-1]
    shown = saverzoo_json("savers", "show", base, "--dataset", "val", "--confidence", "margin")
    assert shown["best"]["saver"] == best[base]["saver"]
    assert shown["confidence"] == "margin"
    curve = saverzoo_json(
        "savers", "curve", base, NAMES[0], "--dataset", "val", "--confidence", "margin"
    )
    distinct = len(np.unique(truth[NAMES[0]][1]))
    assert curve["confidence"] == "margin" and curve["num_exit_sets"] == distinct + 1
