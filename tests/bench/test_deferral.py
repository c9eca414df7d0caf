"""The deferral benchmark, run tiny: every zoo, budget, base and signal gets a held-out saving
with its interval, and the differences are those of the savings."""

from __future__ import annotations

import json

import pytest

from bench.deferral import BUDGETS, SIGNALS, SYNTHETIC, main


def test_the_benchmark_compares_every_signal_at_every_budget(tmp_path, capsys):
    main(
        [
            "--models",
            "4",
            "--samples",
            "300",
            "--resamples",
            "40",
            "--json",
            str(tmp_path / "d.json"),
        ]
    )
    zoos = json.loads((tmp_path / "d.json").read_text())["zoos"]
    assert set(zoos) == set(SYNTHETIC)
    result = zoos["specialists-noisy-labels"]
    assert set(result["budgets"]) == {str(b) for b in BUDGETS}
    for block in result["budgets"].values():
        assert len(block["bases"]) == 4
        for entry in block["bases"]:
            for signal in SIGNALS:
                low, high = entry[signal]["saving_ci"]
                assert low <= high
            for other in ("max", "margin"):
                difference = entry[f"learned_minus_{other}"]
                expected = entry["learned"]["saving"] - entry[other]["saving"]
                assert difference["value"] == pytest.approx(expected)
                assert difference["ci"][0] <= difference["ci"][1]
        mean = block["mean_over_bases"]
        assert set(mean) == {*SIGNALS, "learned_minus_max", "learned_minus_margin"}
    printed = capsys.readouterr().out
    assert "budget 0.5 points" in printed and "learned_minus_max" in printed
