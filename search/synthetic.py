"""Synthetic but plausible zoos: dearer models are more accurate, confidence tracks correctness.

Used by the benchmark, the example demo and the tests, never in place of real predictions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SyntheticZoo:
    names: list[str]
    gmacs: np.ndarray  # (M,)
    labels: np.ndarray  # (N,)
    predictions: np.ndarray  # (M, N) top-1 class
    confidence: np.ndarray  # (M, N) float32 top-1 probability


def make_zoo(
    num_models: int, num_samples: int, num_classes: int = 1000, seed: int = 0, decimals: int = 4
) -> SyntheticZoo:
    """Models from 0.05 to 60 GMACs; each sample has a difficulty all models share."""
    rng = np.random.default_rng(seed)
    gmacs = np.sort(np.exp(rng.uniform(np.log(0.05), np.log(60.0), num_models)))
    skill = 0.6 * np.log(gmacs) + rng.normal(0.0, 0.3, num_models)
    difficulty = rng.normal(0.0, 1.5, num_samples)
    labels = rng.integers(0, num_classes, num_samples)
    margin = skill[:, None] - difficulty[None, :] + rng.normal(0.0, 1.0, (num_models, num_samples))
    correct = margin > 0
    wrong_class = (labels[None, :] + rng.integers(1, num_classes, margin.shape)) % num_classes
    predictions = np.where(correct, labels[None, :], wrong_class)
    confidence = 1.0 / (1.0 + np.exp(-(margin + rng.normal(0.0, 0.8, margin.shape))))
    confidence = np.round(confidence, decimals).astype(np.float32)  # rounding makes real ties
    names = [f"zoo{i:03d}" for i in range(num_models)]
    return SyntheticZoo(names, gmacs, labels, predictions, confidence)


def write_records(zoo: SyntheticZoo, directory: Path, names: list[str] | None = None) -> Path:
    """Write the zoo in the TinySaver seed code's record format (one exit, top-1)."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = set(names or zoo.names)
    info = {}
    for row, name in enumerate(zoo.names):
        if name not in wanted:
            continue
        np.savez(
            directory / f"{name}_test.npz",
            label=zoo.labels[:, None],
            preds=zoo.predictions[row][None, :, None],
            confs=zoo.confidence[row][None, :, None],
        )
        info[name] = {
            "macs": float(zoo.gmacs[row] * 1e9),
            "flops": float(zoo.gmacs[row] * 2e9),
            "params": float(zoo.gmacs[row] * 5e6),
            "acc": float((zoo.predictions[row] == zoo.labels).mean()),  # a fraction, as the seed
        }
    complexity = directory / "complexity_info.json"
    existing = json.loads(complexity.read_text()) if complexity.exists() else {}
    complexity.write_text(json.dumps({**existing, **info}, indent=1))
    return directory
