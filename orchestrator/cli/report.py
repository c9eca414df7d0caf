"""``saverzoo report``: a dataset's report as files."""

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
from orchestrator.cli.options import Criterion, Dataset, Holdout, MaxDrop
from search.criteria import BUDGET


def report(
    dataset: Dataset,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder of the report (default: where `serve` finds it)."),
    ] = None,
    max_drop: MaxDrop = None,
    criterion: Criterion = BUDGET,
    holdout: Holdout = False,
    score_on: Annotated[
        str | None,
        typer.Option(help="Another dataset: the table scores the savers picked here on it."),
    ] = None,
) -> None:
    """Write a dataset's report: index.html (sortable table), zoo and curve PNGs, CSV tables."""
    from orchestrator.cli.options import keep_budget
    from orchestrator.reports.page import report_folder, write_report
    from orchestrator.saver_query import SaverQuery
    from search.parameters import as_flag, parameters_worded

    settings = settings_or_fail()
    folder = out_dir or report_folder(settings.report_dir, dataset)
    with transaction(settings) as session, parameters_worded(as_flag):
        asked = SaverQuery(
            criterion=criterion, max_drop=max_drop, holdout=holdout, score_on=score_on
        )
        keep_budget(session, dataset, asked.checked())
        # write_report checks the query itself: a checked paper query carries a 0-point budget,
        # which a second check refuses.
        with progress_bar("plotting Pareto fronts") as update:
            summary = write_report(session, dataset, folder, asked, update)
    out.print(
        f"report of {dataset} written to {summary.path / 'index.html'}: {summary.saved} of "
        f"{summary.bases} bases saved ({summary.seconds:.1f} s)"
    )
