"""``saverzoo savers``: best savers, their alternatives, pair curves."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.console import (
    err,
    out,
    print_json,
    progress_bar,
    transaction,
    user_errors,
)
from orchestrator.cli.options import (
    AsJson,
    Confidence,
    Criterion,
    Dataset,
    Holdout,
    MaxDrop,
    Wide,
)
from orchestrator.limits import DEFAULT_ALTERNATIVES
from search.costs import GMACS
from search.criteria import BUDGET, DEFAULT_CANDIDATES, MAX_PROBABILITY

if TYPE_CHECKING:
    from orchestrator.saver_query import SaverQuery
    from search.service import SaverSearch

savers_app = typer.Typer(help="Best savers, pair curves and their computation.")


@savers_app.command("refresh")
def savers_refresh(
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster whose CPUs compute the pairs: host:port of its head, or auto "
            "(as `sweep submit`). Default: this process, on this machine's cores.",
        ),
    ] = None,
) -> None:
    """Compute every missing pair of the dataset, update its best savers and the three-model
    cascades it keeps."""
    from search.service import SaverSearch

    with ExitStack() as stack:
        with user_errors():  # a bad address, a cluster that does not answer: one line
            pairs = _ray_pairs(stack, ray_address) if ray_address else None
        _refresh(SaverSearch(pairs=pairs), dataset)


def _ray_pairs(stack: ExitStack, address: str):
    """Pairs computed by Ray tasks on the cluster at ``address``, joined for ``stack``'s life."""
    from cluster.errors import InputError
    from cluster.ray_cluster import check_reachable, connected
    from search.ray_pairs import RayPairs

    if "://" in address:
        raise InputError(
            f"--ray-address {address!r}: the search joins a cluster as host:port of its head "
            "(or auto); Ray Jobs addresses are for `sweep submit`"
        )
    check_reachable(address)  # before Ray is imported: a wrong address costs nothing
    stack.enter_context(connected(address))
    return RayPairs()


def _refresh(search: SaverSearch, dataset: str) -> None:
    from db.queries import get_dataset
    from search.chain_service import kept_candidates, refresh_chains

    with transaction() as session:
        data = get_dataset(session, dataset)
        with progress_bar("searching savers") as update:
            summary = search.refresh(session, data, progress=update)
        chains = 0
        for k in kept_candidates(session, data):
            with progress_bar(f"searching three-model cascades, {k} candidates") as update:
                chains += refresh_chains(session, data, search, k, update).searched
    out.print(
        f"{dataset}: {summary.models} models, {summary.pairs_computed} missing pairs computed, "
        f"{summary.best_changed} best savers updated"
        + (f", {chains} three-model cascades searched again" if chains else "")
    )


@savers_app.command("best")
def savers_best(
    dataset: Dataset,
    base: Annotated[str | None, typer.Argument(help="One base model (default: all).")] = None,
    max_drop: MaxDrop = None,
    criterion: Criterion = BUDGET,
    holdout: Holdout = False,
    cost: Annotated[
        str, typer.Option(help="'gmacs', or 'latency' measured on --device-type.")
    ] = GMACS,
    device_type: Annotated[
        str | None,
        typer.Option(help="With --cost latency: the device type whose throughput to use."),
    ] = None,
    score_on: Annotated[
        str | None,
        typer.Option(help="Another dataset: savers picked on --dataset, scored on this one."),
    ] = None,
    stages: Annotated[
        int, typer.Option(help="3: cascades of up to three models, s1 -> s2 -> base.")
    ] = 2,
    candidates: Annotated[
        int, typer.Option(help="With --stages 3: each stage's best savers considered.")
    ] = DEFAULT_CANDIDATES,
    confidence: Confidence = MAX_PROBABILITY,
    as_json: AsJson = False,
    wide: Wide = False,
) -> None:
    """The best saver of every base model (or of BASE)."""
    from orchestrator.answers import json_ready, savers
    from orchestrator.cli.options import keep_budget, keep_chains, keep_signal
    from orchestrator.saver_query import SaverQuery
    from search.parameters import as_flag, parameters_worded

    with transaction() as session, parameters_worded(as_flag):
        query = SaverQuery(
            criterion=criterion,
            max_drop=max_drop,
            holdout=holdout,
            cost=cost,
            device_type=device_type,
            score_on=score_on,
            stages=stages,
            candidates=candidates,
            confidence=confidence,
        ).checked()
        keep_signal(session, dataset, query.confidence)
        if query.score_on is not None:
            keep_signal(session, query.score_on, query.confidence)
        keep_budget(session, dataset, query)
        if query.stages == 3:
            keep_chains(session, dataset, query)
        answer, left_out = savers(session, dataset, query, base)
    rows = json_ready(answer)
    notice = None
    if left_out and score_on is not None:
        notice = (
            f"{len(left_out)} bases left out: they or their savers have no complete "
            f"predictions on {score_on!r}"
        )
    elif left_out:
        notice = (
            f"{len(left_out)} of {len(rows)} bases have no throughput measured on "
            f"{device_type!r}: listed last, without a saver"
        )
    if as_json:
        print_json(rows)
        if notice:
            err.print(notice, style="dim", highlight=False)
        return
    if query.stages == 3:
        _print_chains(rows, query, dataset, wide)
        return
    _print_best(
        rows, query.fields, _title(query, dataset), notes=[notice] if notice else [], wide=wide
    )


@savers_app.command("show")
def savers_show(
    base: Annotated[str, typer.Argument(help="A base model.")],
    dataset: Dataset,
    max_drop: MaxDrop = None,
    criterion: Criterion = BUDGET,
    holdout: Holdout = False,
    alternatives: Annotated[
        int, typer.Option(help="How many next-best savers to list.")
    ] = DEFAULT_ALTERNATIVES,
    confidence: Confidence = MAX_PROBABILITY,
    as_json: AsJson = False,
    wide: Wide = False,
) -> None:
    """BASE's best saver and the next-best alternatives, ranked the same way."""
    from orchestrator.answers import json_ready, saver_of
    from orchestrator.cli.options import keep_budget, keep_signal
    from orchestrator.saver_query import SaverQuery
    from search.parameters import as_flag, parameters_worded

    with transaction() as session, parameters_worded(as_flag):
        query = SaverQuery(
            criterion=criterion, max_drop=max_drop, holdout=holdout, confidence=confidence
        ).checked()
        keep_signal(session, dataset, query.confidence)
        keep_budget(session, dataset, query)
        answer = json_ready(saver_of(session, dataset, base, query, alternatives))
    if as_json:
        print_json(answer)
        return
    ranked = [answer["best"], *answer["alternatives"]] if answer["best"] else []
    title = _title(query, dataset).replace(
        f"{dataset}: ", f"{dataset}: savers of {base} ({answer['base_gmacs']:.4g} GMACs), ", 1
    )
    shown = (
        f"{len(ranked)} of {answer['candidates']} cheaper models shown, best first"
        if ranked
        else f"no saver of {base} meets this criterion ({answer['candidates']} cheaper models)"
    )
    _print_best(
        ranked, query.fields, title, notes=[shown], wide=wide, first=("saver", "saver_gmacs")
    )


# How soon a field's column is left out where the width is short (0: never; up to
# tables.ESSENTIAL, kept at the price of shortened names).
IMPORTANCE = {
    "saving": 1,
    "delta_c": 1,
    "accuracy": 2,
    "threshold": 3,
    "exit_ratio": 4,
    "in_sample_saving": 5,  # held out: the saving where the threshold was picked, beside it
    "base_accuracy": 6,
    "in_sample_accuracy": 7,
    "frontier_saving": 8,
    "frontier_model": 9,
    "relative_cost": 10,  # 1 - saving: the least news
    "accuracy_ci": 11,  # an interval goes beside its estimate where it fits
    "saving_ci": 11,
}
# Where an answer has an in-sample saving (held out, or scored on another dataset), that saving
# goes beside the one measured apart, before the exits: the two side by side are its point.
BESIDE = {"in_sample_saving": IMPORTANCE["exit_ratio"], "exit_ratio": IMPORTANCE["exit_ratio"] + 1}
BEATEN = "*"  # marks a row whose frontier model beats it, with or without colour


def _field_column(field: str, fields: tuple[str, ...] = ()):
    from orchestrator.answers import FIELDS
    from orchestrator.cli.tables import NAME, NUMBER, Column

    kind = NAME if field == "frontier_model" else NUMBER
    importance = IMPORTANCE | BESIDE if "in_sample_saving" in fields else IMPORTANCE
    return Column(FIELDS[field].label, kind, importance[field])


def _marked(rows: list[dict], columns: list, cells: list[list[str]], notes: list[str]):
    """Columns and rows with a first column marking the rows beaten by their frontier model (in
    yellow too on a terminal), and the note that says so."""
    from orchestrator.answers import FIELDS, beaten_by_frontier
    from orchestrator.cli.tables import TEXT, Column, Row

    beaten = [beaten_by_frontier(row) for row in rows]
    if not any(beaten):
        return columns, [Row(c) for c in cells], notes
    count = f"{sum(beaten)} row{'s' if sum(beaten) > 1 else ''}"
    note = (
        f"{BEATEN} ({count}): the frontier model alone is as accurate and cheaper "
        f"(negative {FIELDS['frontier_saving'].label})"
    )
    return (
        [Column("", TEXT), *columns],
        [
            Row([BEATEN if b else "", *c], "yellow" if b else None)
            for b, c in zip(beaten, cells, strict=True)
        ],
        [*notes, note],
    )


def _print_chains(rows: list[dict], query: SaverQuery, dataset: str, wide: bool) -> None:
    from orchestrator.answers import FIELDS
    from orchestrator.cli.console import print_table
    from orchestrator.cli.tables import NAME, NUMBER, Column, Table

    fields = ("accuracy", "base_accuracy", "relative_cost", "saving", "frontier_model")
    columns = [
        Column("base", NAME),
        Column("saver 1", NAME),
        Column("saver 2", NAME),
        Column("threshold 1", NUMBER, IMPORTANCE["threshold"]),
        Column("threshold 2", NUMBER, IMPORTANCE["threshold"]),
        Column(f"{FIELDS['exit_ratio'].label} at 1", NUMBER, IMPORTANCE["exit_ratio"]),
        Column(f"{FIELDS['exit_ratio'].label} at 2", NUMBER, IMPORTANCE["exit_ratio"]),
        *(_field_column(f) for f in (*fields, "frontier_saving")),
    ]
    cells = []
    for row in rows:
        chain = row["chain"] or []
        thresholds = row["thresholds"] or []
        exits = row["exit_ratios"] or []
        cells.append(
            [
                row["base"],
                *(_nth(chain, i, "none" if i == 0 else "-") for i in (0, 1)),
                *(_nth([_cell("threshold", t) for t in thresholds], i) for i in (0, 1)),
                *(_nth([_cell("exit_ratio", r) for r in exits], i) for i in (0, 1)),
                *(_cell(f, row[f]) for f in (*fields, "frontier_saving")),
            ]
        )
    columns, table_rows, notes = _marked(rows, columns, cells, [])
    title = (
        f"{dataset}: best cascades of up to three models (saver 1 -> saver 2 -> base), accuracy "
        f"drop <= {query.max_drop:g} pts, {query.candidates} candidates a stage"
    )
    print_table(Table(columns, table_rows, title, notes), wide=wide)


def _nth(values: list[str], i: int, missing: str = "-") -> str:
    return values[i] if i < len(values) else missing


def _cell(field: str, value: float | None) -> str:
    from orchestrator.answers import field_text

    return field_text(field, value, missing="-")


def _title(query: SaverQuery, dataset: str) -> str:
    from search.costs import LATENCY
    from search.criteria import PAPER

    title = (
        f"{dataset}: paper criterion (equal performance)"
        if query.criterion == PAPER
        else f"{dataset}: best savers, accuracy drop <= {query.max_drop:g} pts"
    )
    if query.holdout:
        title += ", picked on the calibration half, scored on the other half"
    if query.cost == LATENCY:
        title += f"; cost: latency on {query.device_type}"
    if query.score_on is not None:
        title += f", picked on {dataset} (calib.), scored on {query.score_on}"
    return title


def _print_best(
    rows: list[dict],
    fields: tuple[str, ...],
    title: str,
    *,
    notes: list[str],
    wide: bool,
    first: tuple = ("base", "saver"),
) -> None:
    """One row per saver: the ``first`` columns (names, or a saver's cost), then ``fields``."""
    from orchestrator.cli.console import print_table
    from orchestrator.cli.tables import NAME, NUMBER, Column, Table

    leading = {
        "base": Column("base", NAME),
        "saver": Column("saver", NAME),
        "saver_gmacs": Column("GMACs", NUMBER, IMPORTANCE["base_accuracy"]),
    }
    columns = [leading[f] for f in first] + [_field_column(f, fields) for f in fields]
    cells = [
        [
            *(_leading_cell(row[f]) for f in first),
            *(_cell(f, row[f]) for f in fields),
        ]
        for row in rows
    ]
    columns, table_rows, notes = _marked(rows, columns, cells, notes)
    print_table(Table(columns, table_rows, title, notes), wide=wide)


def _leading_cell(value: str | float | None) -> str:
    """A base or saver name ("none": no saver), or a saver's GMACs."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return value or "none"


@savers_app.command("curve")
def savers_curve(
    base: Annotated[str, typer.Argument(help="Base model.")],
    saver: Annotated[str, typer.Argument(help="Saver model (cheaper than the base).")],
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the curve here.")] = None,
    confidence: Confidence = MAX_PROBABILITY,
    wide: Wide = False,
) -> None:
    """The Pareto front of (relative cost, accuracy) of one pair."""
    from orchestrator.answers import FIELDS, json_ready, pair_curve
    from orchestrator.cli.console import print_table
    from orchestrator.cli.tables import NUMBER, Column, Row, Table
    from search.parameters import as_flag, parameters_worded
    from search.views import CURVE_FIELDS

    with transaction() as session, parameters_worded(as_flag):
        result = json_ready(pair_curve(session, dataset, base, saver, confidence))
    if plot is not None:
        from orchestrator.reports.plots import plot_curve

        plot_curve(result, plot)
        err.print(f"plot written to {plot}")
    if as_json:
        print_json(result)
        return
    front = result["pareto_front"]
    shown = front if len(front) <= 20 else [front[i * (len(front) - 1) // 19] for i in range(20)]
    title = (
        f"{saver} before {base} on {dataset}: Pareto front, {len(front)} of "
        f"{result['num_exit_sets']} exit sets"
    )
    notes = (
        [f"{len(shown)} points shown, evenly spaced; --json gives all"] if shown != front else []
    )
    columns = [Column(FIELDS[f].label, NUMBER, IMPORTANCE[f]) for f in CURVE_FIELDS]
    rows = [Row([_cell(f, point[f]) for f in CURVE_FIELDS]) for point in shown]
    print_table(Table(columns, rows, title, notes), wide=wide)
