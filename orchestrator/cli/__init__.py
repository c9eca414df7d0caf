"""The ``saverzoo`` command line: one typer group per subject, each in its own module.

Every command owns its database session (``with sessions.begin()``): a failure rolls everything
back, so a command either does all of its writes or none (a new or embedded database is migrated
first, in a transaction of its own). Errors the user can fix print one line and exit 1.

Nothing heavy is imported here or at the top of a command module, and only the command that runs
is built (``LazyCommands``): a command imports the database layer, torch, timm, Ray, webdataset,
matplotlib or numba inside its body, so queries start at once.
"""

from __future__ import annotations

from typing import ClassVar

import typer

from orchestrator.cli.group import LazyCommands


class Commands(LazyCommands):
    COMMANDS: ClassVar[dict[str, tuple[str, str]]] = {
        "db": ("orchestrator.cli.db", "db_app"),
        "records": ("orchestrator.cli.records", "records_app"),
        "models": ("orchestrator.cli.models", "models_app"),
        "savers": ("orchestrator.cli.savers", "savers_app"),
        "datasets": ("orchestrator.cli.datasets", "datasets_app"),
        "objectstore": ("orchestrator.cli.datasets", "objectstore_app"),
        "evaluate": ("orchestrator.cli.evaluate", "evaluate"),
        "sweep": ("orchestrator.cli.sweep", "sweep_app"),
        "cascade": ("orchestrator.cli.cascade", "cascade_app"),
        "watch": ("orchestrator.cli.watch", "watch"),
        "serve": ("orchestrator.cli.serve", "serve"),
        "report": ("orchestrator.cli.report", "report"),
        "demo": ("orchestrator.cli.demo", "demo"),
    }


app = typer.Typer(
    cls=Commands,
    help="Find the tiny model that saves each large model of a zoo (TinySaver).",
)


@app.callback()
def _top() -> None:
    """Find the tiny model that saves each large model of a zoo (TinySaver)."""


def main() -> None:  # pragma: no cover - console entry point
    app()
