"""``saverzoo cascade``: a found saver as a deployable cascade."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.console import fail, os_error_line, out, user_errors
from orchestrator.cli.options import Confidence

cascade_app = typer.Typer(help="Cascades (saver first, base where unsure) to deploy.")


@cascade_app.command("export")
def cascade_export(
    base: Annotated[str, typer.Argument(help="The base model.")],
    dataset: Annotated[str, typer.Option(help="The dataset whose search chose the saver.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the cascade into.")],
    max_drop: Annotated[
        float | None, typer.Option(help="Allowed accuracy drop in points (default 0).")
    ] = None,
    criterion: Annotated[str, typer.Option(help="'budget' or 'paper'.")] = "budget",
    holdout: Annotated[bool, typer.Option(help="The held-out threshold.")] = False,
    confidence: Confidence = "max",
) -> None:
    """Both models' weights, their data configs, the threshold and a loader: runs anywhere."""
    from cluster.userfiles import output_folder
    from orchestrator.cascades import chosen_pair
    from search.parameters import as_flag, parameters_worded
    from workers.cascade import Cascade

    with user_errors(), parameters_worded(as_flag):
        output_folder(out_dir)  # before the models are built: a refusal costs nothing
        chosen = chosen_pair(base, dataset, max_drop, criterion, holdout, confidence)
        cascade = Cascade.build(
            chosen.saver, chosen.base, chosen.threshold, confidence=confidence, rule=chosen.rule
        )
        try:
            cascade.export(out_dir, chosen.about)
        except OSError as error:  # a full disk, a folder removed meanwhile
            raise fail(os_error_line(error)) from None
    predicted = chosen.about["predicted"]
    saving = predicted.get("saving", -predicted.get("delta_c", 0.0))
    out.print(
        f"cascade {chosen.saver.name} -> {base} (threshold {chosen.threshold:.6g}, "
        f"predicted saving {100 * saving:.1f}%) written to {out_dir}; "
        f"run it with `python {out_dir / 'load_cascade.py'} IMAGE ...` or Cascade.load"
    )
