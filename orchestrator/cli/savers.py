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
from orchestrator.cli.options import AsJson, Confidence, Criterion, Dataset, Holdout, MaxDrop
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
        _print_chains(rows, query, dataset)
        return
    _print_best(rows, query, dataset, notice)


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
    _print_best(
        [{"base": base, **row} for row in ranked],
        query,
        dataset,
        f"{len(ranked)} of {answer['candidates']} cheaper models shown, best first"
        if ranked
        else f"no saver of {base} meets this criterion",
    )


def _print_chains(rows: list[dict], query: SaverQuery, dataset: str) -> None:
    from rich.table import Table

    from orchestrator.answers import FIELDS, beaten_by_frontier

    table = Table(
        "base",
        "cascade",
        "thresholds",
        "exits %",
        "top-1 %",
        "base top-1 %",
        "relative cost",
        "saving %",
        "frontier",
        FIELDS["frontier_saving"].label,
        title=f"{dataset}: best cascades of up to three models, accuracy drop <= "
        f"{query.max_drop:g} pts, {query.candidates} candidates a stage",
    )
    for row in rows:
        table.add_row(
            row["base"],
            " → ".join([*row["chain"], row["base"]]) if row["chain"] else "[dim]none[/]",
            " / ".join(f"{t:.4f}" for t in row["thresholds"] or []) or "-",
            " / ".join(f"{100 * r:.2f}" for r in row["exit_ratios"] or []) or "-",
            *(
                _cell(f, row[f])
                for f in (
                    "accuracy",
                    "base_accuracy",
                    "relative_cost",
                    "saving",
                    "frontier_model",
                    "frontier_saving",
                )
            ),
            style="yellow" if beaten_by_frontier(row) else None,
        )
    out.print(table)


def _cell(field: str, value: float | None) -> str:
    from orchestrator.answers import field_text

    return field_text(field, value, missing="-")


def _print_best(rows: list[dict], query: SaverQuery, dataset: str, notice: str | None = None):
    from rich.table import Table

    from orchestrator.answers import FIELDS, beaten_by_frontier
    from search.costs import LATENCY
    from search.criteria import PAPER

    fields = query.fields
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
    # An interval goes under its estimate, in the same cell: the table stays narrow.
    shown_with = {"accuracy_ci": "accuracy", "saving_ci": "saving"}
    under = {estimate: ci for ci, estimate in shown_with.items() if ci in fields}
    fields = tuple(f for f in fields if f not in shown_with)
    labels = (FIELDS[f].label + (" (95% CI)" if f in under else "") for f in fields)
    beaten = sum(beaten_by_frontier(row) for row in rows)
    if beaten:
        marked = (
            f"{beaten} marked in yellow: their frontier model alone is as accurate and "
            "cheaper (negative saving vs the frontier)"
        )
        notice = f"{notice}; {marked}" if notice else marked
    table = Table("base", "saver", *labels, title=title, caption=notice)
    for column in table.columns:  # a narrow terminal wraps numbers, never cuts them
        column.overflow = "fold"
        column.no_wrap = column.header in ("base", "saver", FIELDS["frontier_model"].label)
    for row in rows:
        cells = [
            _cell(f, row[f])
            + (f"\n[dim]{_cell(under[f], row[under[f]])}[/]" if row.get(under.get(f, "")) else "")
            for f in fields
        ]
        style = "yellow" if beaten_by_frontier(row) else None
        table.add_row(row["base"], row["saver"] or "[dim]none[/]", *cells, style=style)
    out.print(table)


@savers_app.command("curve")
def savers_curve(
    base: Annotated[str, typer.Argument(help="Base model.")],
    saver: Annotated[str, typer.Argument(help="Saver model (cheaper than the base).")],
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the curve here.")] = None,
    confidence: Confidence = MAX_PROBABILITY,
) -> None:
    """The Pareto front of (relative cost, accuracy) of one pair."""
    from rich.table import Table

    from orchestrator.answers import FIELDS, json_ready, pair_curve
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
    table = Table(
        *(FIELDS[f].label for f in CURVE_FIELDS),
        title=f"{saver} before {base} on {dataset}: Pareto front, {len(front)} of "
        f"{result['num_exit_sets']} exit sets"
        + (f" ({len(shown)} shown)" if shown != front else ""),
    )
    for point in shown:
        table.add_row(*(_cell(f, point[f]) for f in CURVE_FIELDS))
    out.print(table)
