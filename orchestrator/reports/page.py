"""A static report of a dataset's best savers: ``index.html``, PNG plots and CSV tables.

The page holds the best-saver table (sortable by any column), a zoo plot joining each base to its
cascade's operating point, and one Pareto-curve plot per saved base. ``savers.csv`` and
``models.csv`` follow timm's results CSVs: one header row, plain numbers, accuracies in percent.
A report is written into a staging folder and moved into place whole, so a reader never sees a
half-written one. ``report.json`` records what it was built from (the dataset's search revision).
The page is the template ``templates/index.html``, rendered with autoescape on.
Where the dataset keeps pairs on more than one confidence signal (``Dataset.confidence_signals``),
the table and ``savers.csv`` also hold each kept signal's best saving under the same query.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster.errors import InputError
from db.models import Dataset, Model
from db.queries import complete_model_ids, dataset_samples, get_dataset, top1_predictions
from orchestrator.answers import (
    FIELDS,
    accuracy_checks,
    beaten_by_frontier,
    field_text,
    json_ready,
    savers,
)
from orchestrator.reports.plots import plot_curve, plot_operating_points
from orchestrator.saver_query import SaverQuery
from search.criteria import LEARNED, MARGIN, MAX_PROBABILITY, PAPER, SIGNALS
from search.engine import Zoo
from search.results import curve_of
from search.transfer import score_cascade
from search.views import fields_for

REPORT_META = "report.json"
ZOO_PLOT = "zoo.png"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReportSummary:
    path: Path
    bases: int
    saved: int
    seconds: float


def report_state(session: Session, dataset: Dataset) -> dict:
    """What a report of the dataset depends on: it is current while this stays the same."""
    return {
        "dataset": dataset.name,
        "search_revision": dataset.search_revision,
        "models": len(complete_model_ids(session, dataset)),
    }


def write_report(
    session: Session,
    dataset_name: str,
    out: Path,
    query: SaverQuery | None = None,
    progress: Progress | None = None,
) -> ReportSummary:
    """Write the report of the dataset's stored results into ``out`` (replaced whole)."""
    start = time.perf_counter()
    query = (query or SaverQuery()).checked()
    dataset = get_dataset(session, dataset_name)
    staging = _staging(out)  # before any work: an --out that cannot be written fails at once
    try:
        rows: list[dict] = json_ready(savers(session, dataset_name, query)[0])  # the API's objects
        # The plots are of this dataset's own cascades; with score_on only the table (and
        # savers.csv) is scored on the other dataset.
        in_sample = replace(query, score_on=None)
        plotted = (
            json_ready(savers(session, dataset_name, in_sample)[0]) if query.score_on else rows
        )
        zoo, models = _zoo(session, dataset)
        index = {name: i for i, name in enumerate(zoo.names)}
        if query.criterion == PAPER:  # its answers carry ΔC, the plot a cascade's top-1 and cost
            plotted = [_operating_point(zoo, index, row) for row in plotted]
        saved = [row for row in plotted if row["saver"] is not None]
        named = plot_operating_points(models, plotted, staging / ZOO_PLOT)
        curve_files = {}
        for done, row in enumerate(saved, 1):
            result = curve_of(zoo, index[row["base"]], index[row["saver"]], dataset.name)
            curve_files[row["base"]] = f"curves/{file_name(row['base'])}.png"
            chosen = None if query.criterion == PAPER else row
            plot_curve(result, staging / curve_files[row["base"]], chosen)
            if progress:
                progress(done, len(saved))
        others = _other_signal_rows(session, dataset, query)
        (staging / "savers.csv").write_text(savers_csv(rows, models, others))
        (staging / "models.csv").write_text(models_csv(models))
        meta = {
            **report_state(session, dataset),
            "query": query.describe(),
            "signals": kept_signals(dataset),
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "accuracy_warnings": accuracy_checks(session, dataset),
        }
        page = render_index(meta, rows, models, curve_files, named, others)
        (staging / "index.html").write_text(page)
        (staging / REPORT_META).write_text(json.dumps(meta, indent=1))
        _replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ReportSummary(out, len(rows), len(saved), time.perf_counter() - start)


def kept_signals(dataset: Dataset) -> list[str]:
    """The confidence signals the dataset keeps pairs on, in ``SIGNALS`` order."""
    kept = dataset.confidence_signals or [MAX_PROBABILITY]
    return [signal for signal in SIGNALS if signal in kept]


def _other_signal_rows(
    session: Session, dataset: Dataset, query: SaverQuery
) -> dict[str, list[dict]]:
    """The answer rows, under the same query, of each kept signal but the query's own: what the
    page and ``savers.csv`` set beside its answers (nothing when the dataset keeps one signal)."""
    return {
        signal: json_ready(savers(session, dataset.name, replace(query, confidence=signal))[0])
        for signal in kept_signals(dataset)
        if signal != query.confidence
    }


def _staging(out: Path) -> Path:
    """The empty staging folder beside ``out``, made now; ``InputError`` if ``out`` is a file or
    its folder cannot be written."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; name a folder (the report replaces it whole)")
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (staging / "curves").mkdir(parents=True)
    except OSError as error:
        raise InputError(
            f"--out {out}: cannot write a folder there ({error.strerror}); choose a folder you "
            "may write to"
        ) from None
    return staging


def _zoo(session: Session, dataset: Dataset) -> tuple[Zoo, list[dict]]:
    """The complete models' predictions as one zoo, and their table rows cheapest first."""
    ids = complete_model_ids(session, dataset)
    models = sorted(
        session.scalars(select(Model).where(Model.id.in_(ids))), key=lambda m: (m.gmacs, m.name)
    )
    classes, probs = top1_predictions(session, dataset, [m.id for m in models])
    labels = dataset_samples(session, dataset).labels
    zoo = Zoo.from_predictions(
        [m.name for m in models], [m.gmacs for m in models], classes, probs, labels
    )
    rows = [
        {
            "name": m.name,
            "gmacs": m.gmacs,
            "params_m": m.params_m,
            "accuracy": float(zoo.correct_counts[i]) / zoo.num_samples,
            "input_size": m.input_size,
            "crop_pct": m.crop_pct,
            "interpolation": m.interpolation,
            "source": m.source,
        }
        for i, m in enumerate(models)
    ]
    return zoo, rows


def _operating_point(zoo: Zoo, index: dict[str, int], row: dict) -> dict:
    """A row with its cascade's top-1 accuracy and relative cost, scored on the zoo."""
    if row["saver"] is None:
        return row
    base, saver = index[row["base"]], index[row["saver"]]
    point = score_cascade(
        zoo.correct[base],
        zoo.correct[saver],
        zoo.confidence[saver],
        row["threshold"],
        zoo.costs[saver] / zoo.costs[base],
    )
    return {**row, "accuracy": point.accuracy, "relative_cost": point.relative_cost}


def _replace(staging: Path, out: Path) -> None:
    """Move the finished report to ``out``; an older report there goes only once it is ready."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def file_name(model: str) -> str:
    """A file name for any model name (hub names carry '/' and ':'), distinct per name."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model)[:120]
    return f"{safe}-{hashlib.blake2b(model.encode(), digest_size=4).hexdigest()}"


def report_folder(report_dir: Path, dataset: str) -> Path:
    """Where a dataset's report lives under the report folder (``saverzoo serve`` looks there)."""
    return report_dir / file_name(dataset)


# ----- tables ------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.3f}"


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


# savers.csv: the pair fields (its column names are FIELDS' csv names), then the costs.
CSV_FIELDS = (
    "threshold",
    "exit_ratio",
    "accuracy",
    "base_accuracy",
    "accuracy_drop",
    "relative_cost",
    "saving",
    "frontier_model",
    "frontier_saving",
)


def _csv_cell(field: str, value: float | str | None) -> str:
    if field == "threshold" and isinstance(value, float):  # a number for programs, never "<0"
        return format(value, ".6g")
    return field_text(field, value, percent_format=".3f", number_format=".6g")


def _saving(row: dict) -> float | None:
    """A row's saving; the paper criterion reports it as ΔC = -saving."""
    if row.get("delta_c") is not None:
        return -row["delta_c"]
    return row.get("saving")


def savers_csv(
    rows: list[dict], models: list[dict], other_signals: dict[str, list[dict]] | None = None
) -> str:
    """One row per base: its best saver's operating point, accuracies in percent; then, for each
    other kept confidence signal (``other_signals``: its answer rows), that signal's saver,
    threshold and saving."""
    gmacs = {m["name"]: m["gmacs"] for m in models}
    others = _by_base(other_signals)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "base",
            "saver",
            *(FIELDS[f].csv for f in CSV_FIELDS),
            "base_gmacs",
            "saver_gmacs",
            *(f"{s}_{column}" for s in others for column in ("saver", "threshold", "saving_pct")),
        ]
    )
    for row in rows:
        saver = row["saver"]
        values = {field: row.get(field) for field in CSV_FIELDS}
        if values["accuracy"] is not None and values["base_accuracy"] is not None:
            values["accuracy_drop"] = values["base_accuracy"] - values["accuracy"]
        values["saving"] = _saving(row)
        values["relative_cost"] = None if values["saving"] is None else 1 - values["saving"]
        writer.writerow(
            [
                row["base"],
                saver or "",
                *(_csv_cell(f, values[f]) for f in CSV_FIELDS),
                _num(gmacs[row["base"]], 6),
                _num(gmacs.get(saver), 6) if saver else "",
                *(cell for of in others.values() for cell in _signal_csv(of.get(row["base"]))),
            ]
        )
    return buffer.getvalue()


def _signal_csv(row: dict | None) -> list[str]:
    """Another signal's saver, threshold and saving of a base (blank without a saver, or, with
    ``score_on``, where that signal's saver has no predictions on the other dataset)."""
    if row is None or row["saver"] is None:
        return ["", "", ""]
    return [
        row["saver"],
        _csv_cell("threshold", row["threshold"]),
        _csv_cell("saving", _saving(row)),
    ]


def models_csv(models: list[dict]) -> str:
    """timm's results columns (model, top1, top1_err, param_count, img_size, crop_pct,
    interpolation) plus the cost in GMACs and where the model came from."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "model",
            "top1",
            "top1_err",
            "param_count",
            "gmacs",
            "img_size",
            "crop_pct",
            "interpolation",
            "source",
        ]
    )
    for m in models:
        size = m["input_size"][-1] if m["input_size"] else ""
        writer.writerow(
            [
                m["name"],
                _pct(m["accuracy"]),
                _pct(1 - m["accuracy"]),
                "" if m["params_m"] is None else f"{m['params_m']:.2f}",
                _num(m["gmacs"], 6),
                size,
                "" if m["crop_pct"] is None else m["crop_pct"],
                m["interpolation"] or "",
                m["source"],
            ]
        )
    return buffer.getvalue()


# ----- the page ----------------------------------------------------------------------------------
# Autoescape on for every template whatever its file name: names come from the database, and a
# value reaches the page as text unless a template marks it safe (none does).
_PAGES = Environment(
    loader=PackageLoader("orchestrator.reports"),
    autoescape=True,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)
# A long model name may break after its punctuation (the page marks those places with <wbr>), so
# three name columns of 50-character names still fit the page beside the numbers.
_PAGES.filters["name_parts"] = lambda name: re.split(r"(?<=[_.:/-])(?=.)", name)


# What a saver's confidence is, on each signal, in the page's words.
SIGNAL_WORDS = {
    MAX_PROBABILITY: "top-1 probability",
    MARGIN: "top-1 probability minus its top-2",
    LEARNED: "learned deferral score (a rule trained on its own output, scored out of fold)",
}


def _by_base(signals: dict[str, list[dict]] | None) -> dict[str, dict[str, dict]]:
    """Each signal's answer rows by base name."""
    return {signal: {row["base"]: row for row in rows} for signal, rows in (signals or {}).items()}


def render_index(
    meta: dict,
    rows: list[dict],
    models: list[dict],
    curves: dict[str, str],
    named: int,
    other_signals: dict[str, list[dict]] | None = None,
) -> str:
    """The report page: summary, zoo plot (``named`` of its models named on it), sortable
    best-saver table, per-base curves. ``other_signals`` (the answer rows of each kept confidence
    signal but the query's own) sets their saving beside the table's own."""
    query = meta["query"]
    chosen = query.get("confidence", MAX_PROBABILITY)
    columns = fields_for(query["criterion"], query["holdout"], query.get("score_on") is not None)
    gmacs = {m["name"]: m["gmacs"] for m in models}
    criterion = (
        "paper criterion (equal performance)"
        if query["criterion"] == PAPER
        else f"accuracy drop at most {query['max_drop']:g} points"
    )
    if query["holdout"]:
        criterion += ", thresholds picked on the calibration half and scored on the other half"
    if query.get("score_on"):
        criterion += (
            f", thresholds picked on {meta['dataset']} (the calib. columns) and scored on "
            f"{query['score_on']}"
        )
    # The criterion's own measure of each signal's best saver (the saving, or the paper's ΔC),
    # the other signals' columns right after the table's own, which then names its signal.
    # (held out or scored elsewhere, the paper criterion reports a saving: no ΔC column)
    measure = "delta_c" if "delta_c" in columns else "saving"
    others = _by_base(other_signals)
    beside = columns.index(measure) + 1
    labels = [FIELDS[f].label for f in columns]
    if others:
        labels[beside - 1] = f"{chosen} {labels[beside - 1]}"
    labels[beside:beside] = [f"{signal} {FIELDS[measure].label}" for signal in others]
    compared = [s for s in SIGNALS if s == chosen or s in others] if others else []
    table = [
        {
            "base": row["base"],
            "anchor": file_name(row["base"]) if row["base"] in curves else None,
            "gmacs": f"{gmacs[row['base']]:.4g}",
            "saver": row["saver"],
            "beaten": beaten_by_frontier(row),
            "cells": _beside(
                [_cell(field, row.get(field)) for field in columns],
                beside,
                [_signal_cell(measure, of.get(row["base"])) for of in others.values()],
            ),
        }
        for row in rows
    ]
    return _PAGES.get_template("index.html").render(
        dataset=meta["dataset"],
        criterion=criterion,
        saved=sum(row["saver"] is not None for row in rows),
        beaten=sum(row["beaten"] for row in table),
        generated_at=meta["generated_at"],
        search_revision=meta["search_revision"],
        warnings=[w["message"] for w in meta.get("accuracy_warnings", [])],
        zoo_plot=ZOO_PLOT,
        named=named,
        models=len(models),
        # The template keeps each word of a header whole: "top-1 %" breaks at its space only.
        headers=["base", "base GMACs", "saver", *labels],
        rows=table,
        signal=SIGNAL_WORDS[chosen],
        chosen=chosen,
        compared=compared,
        others=list(others),
        measure=FIELDS[measure].label,
        not_kept=[signal for signal in SIGNALS if signal not in compared] if others else [],
        figures=[
            {"anchor": file_name(base), "path": path, "base": base} for base, path in curves.items()
        ],
    )


def _beside(cells: list[dict], at: int, others: list[dict]) -> list[dict]:
    return [*cells[:at], *others, *cells[at:]]


def _signal_cell(measure: str, row: dict | None) -> dict:
    """Another signal's cell of a base: its saving (or ΔC), and its saver and threshold for the
    cell's title; blank, as the table's own, where the signal saves nothing (or, with
    ``score_on``, is not scored there)."""
    if row is None or row["saver"] is None:
        return {**_cell(measure, None), "title": "no saver"}
    threshold = field_text("threshold", row["threshold"], number_format=".4g")
    return {
        **_cell(measure, row.get(measure)),
        "title": f"saver {row['saver']}, threshold {threshold}",
    }


def _cell(field: str, value: float | str | list[float] | None) -> dict:
    """A field's cell: its text, whether that is a model's name, and the exact value the sorting
    script reads."""
    return {
        "text": field_text(field, value, number_format=".4g"),
        "name": isinstance(value, str),
        "value": None if value is None else repr(value),
        "title": None,
    }
