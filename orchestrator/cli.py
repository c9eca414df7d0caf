"""The ``saverzoo`` command line: one typer group per subject, joined with ``add_typer``.

Every command owns its database session (``with sessions.begin()``): a failure rolls everything
back, so a command either does all of its writes or none (a new or embedded database is migrated
first, in a transaction of its own). Errors the user can fix print one line and exit 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from cluster.errors import InputError
from db.models import Model, ModelThroughput
from db.queries import complete_model_ids, get_dataset
from db.schema import current_revision, head_revision, upgrade
from orchestrator.cli_datasets import datasets_app, objectstore_app
from orchestrator.cli_evaluate import evaluate, models_add
from orchestrator.cli_sweep import sweep_app
from orchestrator.console import (
    err,
    fail,
    out,
    print_json,
    progress_bar,
    settings_or_fail,
    transaction,
    user_errors,
)
from search.costs import COSTS, GMACS, LATENCY
from search.results import (
    add_budget,
    best_savers,
    budget_key,
    check_device_type,
    curve,
    fields_for,
    latency_best_savers,
)
from search.selection import BUDGET, PAPER, centipoints
from search.service import SaverSearch

app = typer.Typer(help="Find the tiny model that saves each large model of a zoo (TinySaver).")
db_app = typer.Typer(help="The database: where it is and its schema.")
records_app = typer.Typer(help="Import evaluation records of the TinySaver seed code.")
models_app = typer.Typer(help="Models known to saverzoo.")
savers_app = typer.Typer(help="Best savers, pair curves and their computation.")
app.add_typer(db_app, name="db")
app.add_typer(records_app, name="records")
app.add_typer(models_app, name="models")
app.add_typer(savers_app, name="savers")
app.add_typer(datasets_app, name="datasets")
app.command("evaluate")(evaluate)
models_app.command("add")(models_add)
app.add_typer(objectstore_app, name="objectstore")
app.add_typer(sweep_app, name="sweep")


# ----- db ----------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database schema to this version of saverzoo."""
    settings = settings_or_fail()
    try:
        before, after = upgrade(settings.database_url)
    except Exception as error:  # connection refused, permissions: say where and why
        raise fail(f"cannot upgrade {settings.database_display}: {error}") from None
    state = "already up to date" if before == after else f"upgraded from {before or 'empty'}"
    out.print(f"database {settings.database_display}: {state} (revision {after})")


@db_app.command("info")
def db_info() -> None:
    """Where the database is and its schema revision."""
    settings = settings_or_fail()
    try:
        current = current_revision(settings.database_url)
    except Exception as error:
        raise fail(f"cannot reach {settings.database_display}: {error}") from None
    head = head_revision(settings.database_url)
    out.print(f"database: {settings.database_display}")
    out.print(f"schema:   {current or 'empty'} (this saverzoo needs {head})")


# ----- records -----------------------------------------------------------------------------------
@records_app.command("import")
def records_import(
    directory: Annotated[Path, typer.Argument(help="Folder of {model}_test.npz files.")],
    dataset: Annotated[str, typer.Option(help="Dataset name to file the records under.")],
) -> None:
    """Import TinySaver records (all models or none) and compute their pairs."""
    from orchestrator.imports import import_records

    settings = settings_or_fail()
    with transaction(settings) as session, progress_bar("searching savers") as update:
        summary = import_records(
            session,
            directory,
            dataset,
            budgets=settings.search_budgets,
            holdout_fraction=settings.holdout_fraction,
            search=SaverSearch(),
            progress=update,
        )
    created = "new dataset" if summary.created_dataset else "existing dataset"
    out.print(
        f"imported {len(summary.models)} models on {summary.num_samples} samples into "
        f"{created} {summary.dataset!r}; {summary.search.pairs_computed} pairs computed, "
        f"{summary.search.best_changed} best savers updated "
        f"(database {settings.database_display})"
    )


@records_app.command("export")
def records_export(
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the record files.")],
    models: Annotated[
        list[str] | None, typer.Option(help="Only these models (comma-separated; repeatable).")
    ] = None,
) -> None:
    """Write the dataset's predictions in the TinySaver seed code's record format."""
    from orchestrator.evaluation import split_patterns
    from orchestrator.exports import export_records

    with transaction() as session:
        names = export_records(
            session,
            get_dataset(session, dataset),
            out_dir,
            split_patterns(models) if models else None,
        )
    out.print(f"{len(names)} models' records written to {out_dir}")


# ----- models ------------------------------------------------------------------------------------
@models_app.command("list")
def models_list(
    dataset: Annotated[str | None, typer.Option(help="Only models evaluated on it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Models with their cost and source."""
    with transaction() as session:
        query = select(Model).order_by(Model.gmacs, Model.name)
        if dataset is not None:
            ids = complete_model_ids(session, get_dataset(session, dataset))
            query = query.where(Model.id.in_(ids))
        models = session.scalars(query).all()
        throughput = {}
        for model_id, device, images_per_s in session.execute(
            select(
                ModelThroughput.model_id, ModelThroughput.device_type, ModelThroughput.images_per_s
            )
        ):
            throughput.setdefault(model_id, {})[device] = images_per_s
        rows = [
            {
                "name": m.name,
                "source": m.source,
                "gmacs": m.gmacs,
                "params_m": m.params_m,
                "random_weights": m.random_weights,
                "images_per_s": throughput.get(m.id, {}),
            }
            for m in models
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("model", "source", "GMACs", "params (M)")
    for row in rows:
        params = "" if row["params_m"] is None else f"{row['params_m']:.2f}"
        table.add_row(row["name"], row["source"], f"{row['gmacs']:.4g}", params)
    out.print(table)
    out.print(f"{len(rows)} models in {settings_or_fail().database_display}", style="dim")


# ----- savers ------------------------------------------------------------------------------------
def _criterion(criterion: str, max_drop: float | None) -> tuple[str, float]:
    if criterion not in (BUDGET, PAPER):
        raise fail(f"--criterion must be {BUDGET!r} or {PAPER!r}, not {criterion!r}")
    if criterion == PAPER and max_drop is not None:
        raise fail("--max-drop sets a budget; it cannot be combined with --criterion paper")
    max_drop = 0.0 if max_drop is None else max_drop
    try:
        centipoints(max_drop)
    except InputError as error:
        raise fail(str(error)) from None
    return criterion, max_drop


@savers_app.command("refresh")
def savers_refresh(
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
) -> None:
    """Compute every missing pair of the dataset and update its best savers."""
    with transaction() as session, progress_bar("searching savers") as update:
        summary = SaverSearch().refresh(session, get_dataset(session, dataset), progress=update)
    out.print(
        f"{dataset}: {summary.models} models, {summary.pairs_computed} missing pairs computed, "
        f"{summary.best_changed} best savers updated"
    )


@savers_app.command("best")
def savers_best(
    base: Annotated[str | None, typer.Argument(help="One base model (default: all).")] = None,
    dataset: Annotated[str, typer.Option(help="Dataset name.")] = ...,
    max_drop: Annotated[
        float | None, typer.Option(help="Allowed accuracy drop in points (default 0).")
    ] = None,
    criterion: Annotated[str, typer.Option(help="'budget' or 'paper' (equal performance).")] = (
        BUDGET
    ),
    holdout: Annotated[
        bool, typer.Option(help="Pick thresholds on half the samples, score on the other half.")
    ] = False,
    cost: Annotated[
        str, typer.Option(help="'gmacs', or 'latency' measured on --device-type.")
    ] = GMACS,
    device_type: Annotated[
        str | None,
        typer.Option(help="With --cost latency: the device type whose throughput to use."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The best saver of every base model (or of BASE)."""
    criterion, max_drop = _criterion(criterion, max_drop)
    if cost not in COSTS:
        raise fail(f"--cost must be {GMACS!r} or {LATENCY!r}, not {cost!r}")
    if cost == GMACS and device_type is not None:
        raise fail("--device-type picks the latency measurements; it needs --cost latency")
    unmeasured: list[str] = []
    with transaction() as session:
        data = get_dataset(session, dataset)
        if cost == LATENCY:
            check_device_type(session, data, device_type)
        cp, kept = budget_key(data, criterion, max_drop)
        if not kept:
            with progress_bar(f"computing the {max_drop:g}-point budget") as update:
                add_budget(session, data, cp, SaverSearch(), update)
        query = {
            "criterion": criterion,
            "max_drop_centipoints": cp,
            "holdout": holdout,
            "base": base,
        }
        if cost == LATENCY:
            rows, unmeasured = latency_best_savers(session, data, device_type=device_type, **query)
        else:
            rows = best_savers(session, data, **query)
    notice = (
        f"{len(unmeasured)} of {len(rows)} bases have no throughput measured on "
        f"{device_type!r}: listed last, without a saver"
        if unmeasured
        else None
    )
    if as_json:
        print_json(rows)
        if notice:
            err.print(notice, style="dim", highlight=False)
        return
    _print_best(rows, criterion, max_drop, holdout, dataset, device_type, notice)


HEADERS = {
    "threshold": "threshold",
    "exit_ratio": "exits %",
    "accuracy": "acc %",
    "base_accuracy": "base acc %",
    "relative_cost": "rel. cost",
    "saving": "saving %",
    "delta_c": "ΔC",
    "in_sample_accuracy": "calib acc %",
    "in_sample_saving": "calib saving %",
}
PERCENT = {
    "exit_ratio",
    "accuracy",
    "base_accuracy",
    "saving",
    "in_sample_accuracy",
    "in_sample_saving",
}


def _cell(field: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}" if field in PERCENT else f"{value:.4f}"


def _print_best(
    rows: list[dict],
    criterion: str,
    max_drop: float,
    holdout: bool,
    dataset: str,
    device_type: str | None = None,
    notice: str | None = None,
):
    """``device_type``: costs are latencies measured there (else GMACs)."""
    fields = fields_for(criterion, holdout)
    title = (
        f"{dataset}: paper criterion (equal performance)"
        if criterion == PAPER
        else f"{dataset}: best savers, accuracy drop <= {max_drop:g} pts"
    )
    if holdout:
        title += ", picked on the calibration half, scored on the other half"
    if device_type is not None:
        title += f"; cost: latency on {device_type}"
    table = Table("base", "saver", *(HEADERS[f] for f in fields), title=title, caption=notice)
    for row in rows:
        cells = [_cell(f, row[f]) for f in fields]
        table.add_row(row["base"], row["saver"] or "[dim]none[/]", *cells)
    out.print(table)


@savers_app.command("curve")
def savers_curve(
    base: Annotated[str, typer.Argument(help="Base model.")],
    saver: Annotated[str, typer.Argument(help="Saver model (cheaper than the base).")],
    dataset: Annotated[str, typer.Option(help="Dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the curve here.")] = None,
) -> None:
    """The Pareto front of (relative cost, accuracy) of one pair."""
    with transaction() as session:
        result = curve(session, get_dataset(session, dataset), base, saver)
    if plot is not None:
        from orchestrator.plots import plot_curve

        plot_curve(result, plot)
        err.print(f"plot written to {plot}")
    if as_json:
        print_json(result)
        return
    front = result["pareto_front"]
    shown = front if len(front) <= 20 else [front[i * (len(front) - 1) // 19] for i in range(20)]
    fields = ("threshold", "exit_ratio", "accuracy", "relative_cost", "saving")
    table = Table(
        *(HEADERS[f] for f in fields),
        title=f"{saver} before {base} on {dataset}: Pareto front, {len(front)} of "
        f"{result['num_exit_sets']} exit sets"
        + (f" ({len(shown)} shown)" if shown != front else ""),
    )
    for point in shown:
        table.add_row(*(_cell(f, point[f]) for f in fields))
    out.print(table)


@app.command("demo")
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps everything.")] = Path(
        "demo-out"
    ),
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over (train again).")] = False,
    epochs: Annotated[int, typer.Option(help="Training epochs per model.")] = 3,
    models: Annotated[int, typer.Option(help="How many models of the zoo, cheapest first.")] = 6,
) -> None:
    """The whole product on real data: digits as shards, a trained zoo, a sweep, best savers."""
    from orchestrator.demo import run_demo
    from orchestrator.demo_data import ZOO

    if not 2 <= models <= len(ZOO):
        raise fail(f"--models {models}: use 2 to {len(ZOO)}")
    if epochs < 1:
        raise fail(f"--epochs {epochs}: use 1 or more")
    with user_errors():
        run_demo(workdir, out, fresh=fresh, epochs=epochs, models=models)


def main() -> None:  # pragma: no cover - console entry point
    app()
