"""``saverzoo models``: the models saverzoo knows (``models add`` lives with evaluate)."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.console import (
    err,
    print_json,
    print_prose,
    print_table,
    settings_or_fail,
    transaction,
)
from orchestrator.cli.options import Wide
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
    wide: Wide = False,
) -> None:
    """Models with their cost and source, cheapest first."""
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
    shown = len(page["items"])
    more = f" ({shown} shown from {offset})" if shown < page["total"] else ""
    notes = [f"{page['total']} models{more} in {settings_or_fail().database_display}"]
    print_table(_models_table(page["items"], notes), wide=wide)


def _models_table(items: list[dict], notes: list[str]):
    """A model a row; its measured throughput a column per device type."""
    from orchestrator.cli.tables import NAME, NUMBER, TEXT, Column, Row, Table

    devices = sorted({device for row in items for device in row["images_per_s"]})
    columns = [
        Column("model", NAME),
        Column("GMACs", NUMBER),
        Column("params (M)", NUMBER, 1),
        Column("source", TEXT, 5),
        *(Column(f"img/s {device}", NUMBER, 6) for device in devices),
    ]
    rows = [
        Row(
            [
                row["name"],
                f"{row['gmacs']:.4g}",
                "-" if row["params_m"] is None else f"{row['params_m']:.2f}",
                row["source"] + (" (random weights)" if row["random_weights"] else ""),
                *(_rate(row["images_per_s"].get(device)) for device in devices),
            ]
        )
        for row in items
    ]
    return Table(columns, rows, notes=notes)


def _rate(images_per_s: float | None) -> str:
    return "-" if images_per_s is None else f"{images_per_s:,.0f}"


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
    print_prose(f"{detail['name']} ({detail['source']}, arch {detail['arch'] or '-'})")
    params = "-" if detail["params_m"] is None else f"{detail['params_m']:.2f} M"
    print_prose(
        f"cost: {detail['gmacs']:.4g} GMACs at input {detail['input_size']}, params {params}"
    )
    for device, rate in detail["images_per_s"].items():
        print_prose(f"throughput on {device}: {rate:,.0f} images/s")
    for dataset, accuracy in detail["accuracy"].items():
        print_prose(f"top-1 accuracy on {dataset}: {100 * accuracy:.2f}%")
    if detail["published_top1"] is not None:
        print_prose(f"timm's published ImageNet-1k top-1: {detail['published_top1']:.2f}%")
    for warning in detail["accuracy_warnings"]:
        err.print(f"warning: on {warning['dataset']}, {warning['message']}", style="yellow")


# `models add` builds a model with timm: its body lives with the evaluation commands.
from orchestrator.cli.evaluate import models_add  # noqa: E402

models_app.command("add")(models_add)
