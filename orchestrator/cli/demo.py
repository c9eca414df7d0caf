"""``saverzoo demo``: the whole product on real data."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.console import fail, out, user_errors


def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps everything.")] = Path(
        "demo-out"
    ),
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over (train again).")] = False,
    epochs: Annotated[int, typer.Option(help="Training epochs per model.")] = 3,
    models: Annotated[int, typer.Option(help="How many models of the zoo, cheapest first.")] = 6,
) -> None:
    """The whole product on real data: digits as shards, a trained zoo, a sweep, best savers."""
    from orchestrator.demo.data import ZOO
    from orchestrator.demo.run import run_demo

    if not 2 <= models <= len(ZOO):
        raise fail(f"--models {models}: use 2 to {len(ZOO)}")
    if epochs < 1:
        raise fail(f"--epochs {epochs}: use 1 or more")
    from orchestrator.demo import WIDTH

    # The demo's tables are laid out for 100 columns in a log (the README shows them), for fewer
    # in a narrower terminal, and for COLUMNS when it is set; rich's consoles, made below, read it.
    if "COLUMNS" not in os.environ:
        narrower = shutil.get_terminal_size().columns if sys.stdout.isatty() else WIDTH
        os.environ["COLUMNS"] = str(min(WIDTH, narrower))
    with user_errors():
        from orchestrator.cli import app

        run_demo(workdir, out.console, app, fresh=fresh, epochs=epochs, models=models)
