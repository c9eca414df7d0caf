"""``saverzoo models``: the models saverzoo knows (``models add`` lives with evaluate)."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.console import (
    err,
    out,
    print_json,
    settings_or_fail,
    transaction,
)
from orchestrator.limits import MAX_PAGE

models_app = typer.Typer(help="Models known to saverzoo.")


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
    from rich.table import Table

    from orchestrator.answers import json_ready, models_page
    from search.parameters import as_flag, parameters_worded

    with transaction() as session, parameters_worded(as_flag):
        answer = models_page(
            session,
            dataset=dataset,
            source=source,
            name=name,
            superseded=superseded,
            offset=offset,
            limit=limit,
        )
    page = json_ready(answer)
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
    from orchestrator.answers import json_ready, model_detail

    with transaction() as session:
        detail = json_ready(model_detail(session, name))
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
    if detail["published_top1"] is not None:
        out.print(f"timm's published ImageNet-1k top-1: {detail['published_top1']:.2f}%")
    for warning in detail["accuracy_warnings"]:
        err.print(f"warning: on {warning['dataset']}, {warning['message']}", style="yellow")


# `models add` builds a model with timm: its body lives with the evaluation commands.
from orchestrator.cli.evaluate import models_add  # noqa: E402

models_app.command("add")(models_add)
