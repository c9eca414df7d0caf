"""Does the learned confidence pay? Held-out savings of ``learned`` against ``max`` and ``margin``.

    python -m bench.deferral                        # the synthetic zoo only
    python -m bench.deferral --demo demo-out        # and the zoo of a `saverzoo demo` work folder

For every zoo, budget (0, 0.5 and 1 point) and base: the best saver under each confidence signal,
picked on the calibration half and scored on the evaluation half (``savers best --holdout``), its
held-out saving with the product's 95% interval, and the differences learned - max and learned -
margin with 95% intervals from a paired bootstrap over the evaluation samples (each base's
cascades fixed, the samples redrawn once for all signals). The aggregate is the mean over bases,
its intervals from the same redraws. A base without a saver saves 0.

The synthetic zoos are made to show where a learned rule can help and where it cannot: half of
the models are specialists (accurate on half of the classes, poor on the rest, equally sure on
both); in the second zoo the labels of a fifth of the classes are also noisy (30% wrong whatever
a model says). Neither shows in a model's top-1 probability; its predicted class tells both. The
demo's zoo (digits, small models trained a few epochs) has neither.

The demo's database is copied first: the comparison keeps the learned signal and the budgets in
the copy, never in the demo's own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

BUDGETS = (0.0, 0.5, 1.0)
SIGNALS = ("max", "margin", "learned")
RESAMPLES = 1000
SEED = 0
TOPK = 5
DATASET = "deferral"
#: The synthetic zoos: specialists alone, and with the labels of a fifth of the classes noisy.
SYNTHETIC = {"specialists": 0.0, "specialists-noisy-labels": 0.3}
DEMO_DATASET = "digits-val"  # orchestrator.demo.run.DATASET (whose module imports torch)


# ----- the synthetic zoo ------------------------------------------------------------------------
def specialist_records(
    directory: Path,
    num_models: int,
    num_samples: int,
    noise: float,
    num_classes: int = 20,
    seed: int = 0,
) -> Path:
    """TinySaver records (top-5) of a zoo with specialists, the labels of a fifth of the classes
    wrong with probability ``noise``."""
    rng = np.random.default_rng(seed)
    gmacs = np.exp(np.linspace(np.log(0.1), np.log(20.0), num_models))
    skill = 0.7 * np.log(gmacs) + 1.0
    truth = rng.integers(0, num_classes, num_samples)
    noisy_classes = np.arange(num_classes) < num_classes // 5
    flipped = noisy_classes[truth] & (rng.random(num_samples) < noise)
    labels = np.where(
        flipped, (truth + rng.integers(1, num_classes, num_samples)) % num_classes, truth
    )
    difficulty = rng.normal(0.0, 1.5, num_samples)
    directory.mkdir(parents=True, exist_ok=True)
    info = {}
    for m in range(num_models):
        specialist = m % 2 == 1
        strong = rng.permutation(num_classes) < num_classes // 2
        offset = np.where(strong, 1.5, -1.5)[truth] if specialist else 0.0
        jitter = rng.normal(0.0, 1.0, num_samples)
        right = skill[m] + offset - difficulty + jitter > 0
        wrong = (truth + rng.integers(1, num_classes, num_samples)) % num_classes
        first = np.where(right, truth, wrong)
        # Sure as a generalist of its skill would be: the specialism never shows in p1.
        sureness = skill[m] - difficulty + 0.6 * jitter + rng.normal(0.0, 0.8, num_samples)
        p1 = 1.0 / (1.0 + np.exp(-1.5 * sureness))
        rest = rng.dirichlet(np.ones(TOPK), num_samples)[:, : TOPK - 1] * (1.0 - p1)[:, None]
        rest = np.minimum(-np.sort(-rest, axis=1), p1[:, None])
        probs = np.column_stack([p1, rest]).astype(np.float32)
        others = (
            first[:, None] + rng.permutation(np.arange(1, num_classes))[: TOPK - 1]
        ) % num_classes
        classes = np.column_stack([first, others])
        name = f"{'spec' if specialist else 'gen'}{m:02d}"
        np.savez(
            directory / f"{name}_test.npz",
            label=labels[:, None],
            preds=classes[None],
            confs=probs[None],
        )
        info[name] = {"macs": float(gmacs[m] * 1e9), "params": 1e6}
    (directory / "complexity_info.json").write_text(json.dumps(info))
    return directory


def import_records(url: str, directory: Path, name: str) -> None:
    from db.schema import ensure_schema
    from db.session import session_factory
    from orchestrator.ingest.records_import import import_records as import_
    from search.service import SaverSearch

    ensure_schema(url)
    with session_factory(url).begin() as session:
        import_(
            session,
            directory,
            name,
            budgets=list(BUDGETS),
            holdout_fraction=0.5,
            search=SaverSearch(),
        )


# ----- the comparison ---------------------------------------------------------------------------
def held_out_answers(url: str, name: str) -> dict:
    """Every signal's held-out best savers at every budget, the signals and budgets kept first."""
    from db.queries import get_dataset
    from db.session import session_factory
    from orchestrator.answers import json_ready, savers
    from orchestrator.saver_query import SaverQuery
    from search.selection import centipoints
    from search.service import SaverSearch, add_budget, add_signal

    search = SaverSearch()
    with session_factory(url).begin() as session:
        dataset = get_dataset(session, name)
        for signal in SIGNALS:
            if signal not in (dataset.confidence_signals or ["max"]):
                add_signal(session, dataset, signal, search)
        for budget in BUDGETS:
            if centipoints(budget) not in dataset.budgets_centipoints:
                add_budget(session, dataset, centipoints(budget), search)
    answers = {}
    with session_factory(url).begin() as session:
        for signal in SIGNALS:
            for budget in BUDGETS:
                query = SaverQuery(max_drop=budget, holdout=True, confidence=signal).checked()
                answers[signal, budget] = json_ready(savers(session, name, query)[0])
    return answers


def evaluation_exits(url: str, name: str, answers: dict) -> tuple[dict, dict, int]:
    """Each answer's exits on the evaluation samples (bool, per (signal, budget, base)), each
    pair's cost ratio, and the number of evaluation samples."""
    from db.models import Model
    from db.queries import dataset_samples, get_dataset, top1_predictions
    from db.session import session_factory
    from search.criteria import LEARNED, LEARNED_HOLDOUT
    from search.learned_arrays import derive_learned
    from search.pairs import calibration_mask

    exits, ratios = {}, {}
    with session_factory(url).begin() as session:
        dataset = get_dataset(session, name)
        keys = dataset_samples(session, dataset).keys
        evaluation = ~calibration_mask(keys, dataset.holdout_fraction)
        models = {m.name: m for m in session.query(Model)}
        scores: dict[tuple[str, str], np.ndarray] = {}
        for (signal, budget), rows in answers.items():
            for row in rows:
                if row["saver"] is None:
                    continue
                saver, base = models[row["saver"]], models[row["base"]]
                if (signal, saver.name) not in scores:
                    if signal == LEARNED:
                        _, conf = derive_learned(
                            session, dataset, [saver.id], LEARNED_HOLDOUT, store=False
                        )
                    else:
                        _, conf = top1_predictions(session, dataset, [saver.id], signal)
                    scores[signal, saver.name] = conf[0][evaluation].astype(np.float64)
                exits[signal, budget, base.name] = scores[signal, saver.name] > row["threshold"]
                ratios[signal, budget, base.name] = saver.gmacs / base.gmacs
    return exits, ratios, int(evaluation.sum())


def compare(url: str, name: str, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """The comparison of one zoo (see the module's docstring), as JSON-ready values."""
    answers = held_out_answers(url, name)
    exits, ratios, n = evaluation_exits(url, name, answers)
    draws = np.random.default_rng(seed).integers(0, n, (resamples, n))
    bases = [row["base"] for row in answers[SIGNALS[0], BUDGETS[0]]]
    by_budget: dict[str, dict] = {}
    result: dict[str, Any] = {"evaluation_samples": n, "budgets": by_budget}
    for budget in BUDGETS:
        per_base, redrawn = [], {s: np.zeros((len(bases), resamples)) for s in SIGNALS}
        for b, base in enumerate(bases):
            entry = {"base": base}
            for signal in SIGNALS:
                row = next(r for r in answers[signal, budget] if r["base"] == base)
                saving = row["saving"] if row["saver"] is not None else 0.0
                if row["saver"] is not None:
                    chosen = exits[signal, budget, base]
                    if abs(chosen.mean() - ratios[signal, budget, base] - saving) > 1e-9:
                        raise RuntimeError(f"{base} on {signal}: exits do not give the saving")
                    redrawn[signal][b] = chosen[draws].mean(axis=1) - ratios[signal, budget, base]
                entry[signal] = {
                    "saver": row["saver"],
                    "saving": saving,
                    "saving_ci": row.get("saving_ci") or [0.0, 0.0],
                    "accuracy_drop_points": _drop(row),
                }
            for other in ("max", "margin"):
                entry[f"learned_minus_{other}"] = _with_interval(
                    entry["learned"]["saving"] - entry[other]["saving"],
                    redrawn["learned"][b] - redrawn[other][b],
                )
            per_base.append(entry)
        mean = {s: float(np.mean([e[s]["saving"] for e in per_base])) for s in SIGNALS}
        aggregate = {s: _with_interval(mean[s], redrawn[s].mean(axis=0)) for s in SIGNALS} | {
            f"learned_minus_{other}": _with_interval(
                mean["learned"] - mean[other], (redrawn["learned"] - redrawn[other]).mean(axis=0)
            )
            for other in ("max", "margin")
        }
        by_budget[str(budget)] = {"bases": per_base, "mean_over_bases": aggregate}
    return result


def _drop(row: dict) -> float | None:
    if row["saver"] is None:
        return 0.0
    return round(100 * (row["base_accuracy"] - row["accuracy"]), 3)


def _with_interval(value: float, redrawn: np.ndarray) -> dict:
    low, high = np.percentile(redrawn, [2.5, 97.5])
    return {"value": float(value), "ci": [float(low), float(high)]}


# ----- driver -----------------------------------------------------------------------------------
COLUMNS = (*SIGNALS, "learned_minus_max", "learned_minus_margin")


def print_table(title: str, result: dict) -> None:
    """Held-out savings in percent, each with its 95% interval, a line per base."""
    print(f"\n{title}: {result['evaluation_samples']} evaluation samples (held-out savings, %)")
    for budget, block in result["budgets"].items():
        print(f"  budget {budget} points")
        print("    " + "\t".join(("base", *COLUMNS)))
        rows = [(e["base"], e) for e in block["bases"]]
        for name, entry in [*rows, ("mean", block["mean_over_bases"])]:
            cells = [_cell(entry[c]) for c in COLUMNS]
            print("    " + "\t".join((name, *cells)))


def _cell(figure: dict) -> str:
    if "value" in figure:
        return _pct(figure["value"], figure["ci"])
    return _pct(figure["saving"], figure["saving_ci"])


def _pct(value: float, ci: list[float]) -> str:
    return f"{100 * value:+.1f} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, help="a `saverzoo demo` work folder (its saverzoo.db)")
    parser.add_argument("--models", type=int, default=8, help="synthetic zoo: models")
    parser.add_argument("--samples", type=int, default=6000, help="synthetic zoo: samples")
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    zoos: dict[str, dict] = {}
    results = {"host": f"{platform.machine()}, {os.cpu_count()} CPUs", "zoos": zoos}
    with tempfile.TemporaryDirectory() as tmp:
        for zoo, noise in SYNTHETIC.items():
            url = f"sqlite:///{Path(tmp) / zoo}.db"
            records = specialist_records(Path(tmp) / zoo, args.models, args.samples, noise)
            import_records(url, records, DATASET)
            zoos[zoo] = compare(url, DATASET, args.resamples)
        if args.demo is not None:
            copy = Path(tmp) / "demo.db"
            shutil.copyfile(args.demo / "saverzoo.db", copy)
            zoos["demo"] = compare(f"sqlite:///{copy}", DEMO_DATASET, args.resamples)
    for zoo, result in zoos.items():
        print_table(zoo, result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
