"""The ``saverzoo`` command line: one typer group per subject, joined here with ``add_typer``.

Every command owns its database session (``with sessions.begin()``): a failure rolls everything
back, so a command either does all of its writes or none (a new or embedded database is migrated
first, in a transaction of its own). Errors the user can fix print one line and exit 1.

Nothing heavy is imported here or at the top of a command module: a command imports torch, timm,
Ray, webdataset, matplotlib or numba inside its body, so queries start at once.
"""

from __future__ import annotations

import typer

from orchestrator.cli.cascade import cascade_app
from orchestrator.cli.datasets import datasets_app, objectstore_app
from orchestrator.cli.db import db_app
from orchestrator.cli.demo import demo
from orchestrator.cli.evaluate import evaluate, models_add
from orchestrator.cli.group import OneLineErrors
from orchestrator.cli.models import models_app
from orchestrator.cli.records import records_app
from orchestrator.cli.report import report
from orchestrator.cli.savers import savers_app
from orchestrator.cli.serve import serve
from orchestrator.cli.sweep import sweep_app
from orchestrator.cli.watch import watch

app = typer.Typer(
    cls=OneLineErrors,
    help="Find the tiny model that saves each large model of a zoo (TinySaver).",
)
app.add_typer(db_app, name="db")
app.add_typer(records_app, name="records")
app.add_typer(models_app, name="models")
models_app.command("add")(models_add)
app.add_typer(savers_app, name="savers")
app.add_typer(datasets_app, name="datasets")
app.add_typer(objectstore_app, name="objectstore")
app.command("evaluate")(evaluate)
app.add_typer(sweep_app, name="sweep")
app.add_typer(cascade_app, name="cascade")
app.command("watch")(watch)
app.command("serve")(serve)
app.command("report")(report)
app.command("demo")(demo)


def main() -> None:  # pragma: no cover - console entry point
    app()
