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

from db.queries import get_dataset
from db.schema import current_revision, head_revision, upgrade
from orchestrator.catalog import (
    DEFAULT_ALTERNATIVES,
    MAX_PAGE,
    SaverQuery,
    model_detail,
    models_page,
    saver_of,
    savers,
)
from orchestrator.cli_cascade import cascade_app
from orchestrator.cli_datasets import datasets_app, objectstore_app
from orchestrator.cli_evaluate import evaluate, models_add
from orchestrator.cli_group import OneLineErrors
from orchestrator.cli_serve import serve
from orchestrator.cli_sweep import sweep_app
from orchestrator.cli_watch import watch
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
from search.costs import GMACS, LATENCY
from search.results import add_budget, budget_key, curve, fields_for
from search.selection import BUDGET, PAPER
from search.service import SaverSearch

app = typer.Typer(
    cls=OneLineErrors,
    help="Find the tiny model that saves each large model of a zoo (TinySaver).",
)
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
app.command("serve")(serve)
app.command("watch")(watch)
app.add_typer(cascade_app, name="cascade")


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
    source: Annotated[str | None, typer.Option(help="timm, checkpoint or records.")] = None,
    name: Annotated[str | None, typer.Option(help="Names matching this pattern, e.g. 'vit_*'.")] = (
        None
    ),
    superseded: Annotated[
        bool, typer.Option("--superseded", help="Also models whose weights were replaced.")
    ] = False,
    offset: Annotated[int, typer.Option(help="Skip this many models.")] = 0,
    limit: Annotated[int, typer.Option(help=f"At most this many (1 to {MAX_PAGE}).")] = MAX_PAGE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Models with their cost and source, cheapest first."""
    with transaction() as session:
        page = models_page(
            session,
            dataset=dataset,
            source=source,
            name=name,
            superseded=superseded,
            offset=offset,
            limit=limit,
        )
    if as_json:
        print_json(page)
        return
    table = Table("model", "source", "GMACs", "params (M)")
    for row in page["items"]:
        params = "" if row["params_m"] is None else f"{row['params_m']:.2f}"
        table.add_row(row["name"], row["source"], f"{row['gmacs']:.4g}", params)
    out.print(table)
    shown = len(page["items"])
    more = f" ({shown} shown from {offset})" if shown < page["total"] else ""
    out.print(f"{page['total']} models{more} in {settings_or_fail().database_display}", style="dim")


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="A model's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A model's profile, data config, throughput and accuracy per dataset."""
    with transaction() as session:
        detail = model_detail(session, name)
    if as_json:
        print_json(detail)
        return
    out.print(f"[bold]{detail['name']}[/] ({detail['source']}, arch {detail['arch'] or '-'})")
    params = "-" if detail["params_m"] is None else f"{detail['params_m']:.2f} M"
    out.print(f"cost: {detail['gmacs']:.4g} GMACs at input {detail['input_size']}, params {params}")
    for device, rate in detail["images_per_s"].items():
        out.print(f"throughput on {device}: {rate:,.0f} images/s")
    for dataset, accuracy in detail["accuracy"].items():
        out.print(f"top-1 accuracy on {dataset}: {100 * accuracy:.2f}%")


# ----- savers ------------------------------------------------------------------------------------
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


Dataset = Annotated[str, typer.Option(help="Dataset name.")]
MaxDrop = Annotated[float | None, typer.Option(help="Allowed accuracy drop in points (default 0).")]
Criterion = Annotated[str, typer.Option(help="'budget' or 'paper' (equal performance).")]
Holdout = Annotated[
    bool, typer.Option(help="Pick thresholds on half the samples, score on the other half.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _keep_budget(session, dataset: str, query: SaverQuery) -> None:
    """Unlike the HTTP API, the CLI computes a budget the dataset does not keep yet."""
    data = get_dataset(session, dataset)
    cp, kept = budget_key(data, query.criterion, query.max_drop)
    if not kept:
        with progress_bar(f"computing the {query.max_drop:g}-point budget") as update:
            add_budget(session, data, cp, SaverSearch(), update)


@savers_app.command("best")
def savers_best(
    base: Annotated[str | None, typer.Argument(help="One base model (default: all).")] = None,
    dataset: Dataset = ...,
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
    as_json: AsJson = False,
) -> None:
    """The best saver of every base model (or of BASE)."""
    with transaction() as session:
        query = SaverQuery(criterion, max_drop, holdout, cost, device_type).checked()
        _keep_budget(session, dataset, query)
        rows, unmeasured = savers(session, dataset, query, base)
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
    _print_best(rows, query, dataset, notice)


@savers_app.command("show")
def savers_show(
    base: Annotated[str, typer.Argument(help="A base model.")],
    dataset: Dataset = ...,
    max_drop: MaxDrop = None,
    criterion: Criterion = BUDGET,
    holdout: Holdout = False,
    alternatives: Annotated[
        int, typer.Option(help="How many next-best savers to list.")
    ] = DEFAULT_ALTERNATIVES,
    as_json: AsJson = False,
) -> None:
    """BASE's best saver and the next-best alternatives, ranked the same way."""
    with transaction() as session:
        query = SaverQuery(criterion, max_drop, holdout).checked()
        _keep_budget(session, dataset, query)
        answer = saver_of(session, dataset, base, query, alternatives)
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


def _print_best(rows: list[dict], query: SaverQuery, dataset: str, notice: str | None = None):
    fields = fields_for(query.criterion, query.holdout)
    title = (
        f"{dataset}: paper criterion (equal performance)"
        if query.criterion == PAPER
        else f"{dataset}: best savers, accuracy drop <= {query.max_drop:g} pts"
    )
    if query.holdout:
        title += ", picked on the calibration half, scored on the other half"
    if query.cost == LATENCY:
        title += f"; cost: latency on {query.device_type}"
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


@app.command("report")
def report(
    dataset: Dataset = ...,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder of the report (default: where `serve` finds it)."),
    ] = None,
    max_drop: MaxDrop = None,
    criterion: Criterion = BUDGET,
    holdout: Holdout = False,
) -> None:
    """Write a dataset's report: index.html (sortable table), zoo and curve PNGs, CSV tables."""
    from orchestrator.report import write_report
    from orchestrator.report_server import report_folder

    settings = settings_or_fail()
    folder = out_dir or report_folder(settings.report_dir, dataset)
    with transaction(settings) as session:
        query = SaverQuery(criterion, max_drop, holdout).checked()
        _keep_budget(session, dataset, query)
        with progress_bar("plotting Pareto fronts") as update:
            summary = write_report(session, dataset, folder, query, update)
    out.print(
        f"report of {dataset} written to {summary.path / 'index.html'}: {summary.saved} of "
        f"{summary.bases} bases saved ({summary.seconds:.1f} s)"
    )


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
