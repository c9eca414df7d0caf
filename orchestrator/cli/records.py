"""``saverzoo records``: TinySaver records in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.console import (
    out,
    progress_bar,
    settings_or_fail,
    transaction,
)
from orchestrator.cli.options import ImagenetVal

records_app = typer.Typer(help="Import evaluation records of the TinySaver seed code.")


@records_app.command("import")
def records_import(
    directory: Annotated[Path, typer.Argument(help="Folder of {model}_test.npz files.")],
    dataset: Annotated[str, typer.Option(help="Dataset name to file the records under.")],
    imagenet_val: ImagenetVal = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace a model's stored predictions on the dataset, or its cost, when the "
            "records differ (refused without it).",
        ),
    ] = False,
) -> None:
    """Import TinySaver records (all models or none) and compute their pairs."""
    from orchestrator.ingest.records_import import import_records
    from search.service import SaverSearch

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
            imagenet_val=imagenet_val,
            replace=replace,
        )
    created = "new dataset" if summary.created_dataset else "existing dataset"
    same = f" ({len(summary.unchanged)} unchanged)" if summary.unchanged else ""
    out.print(
        f"imported {len(summary.models)} models{same} on {summary.num_samples} samples into "
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
    from db.queries import get_dataset
    from orchestrator.ingest.records_export import export_records
    from workers.identity import split_patterns

    with transaction() as session:
        names = export_records(
            session,
            get_dataset(session, dataset),
            out_dir,
            split_patterns(models) if models else None,
        )
    out.print(f"{len(names)} models' records written to {out_dir}")
