"""Options several commands share, and the budget the CLI computes when a dataset lacks it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.console import progress_bar

if TYPE_CHECKING:
    from orchestrator.saver_query import SaverQuery

Dataset = Annotated[str, typer.Option(help="Dataset name.")]
MaxDrop = Annotated[float | None, typer.Option(help="Allowed accuracy drop in points (default 0).")]
Criterion = Annotated[str, typer.Option(help="'budget' or 'paper' (equal performance).")]
Holdout = Annotated[
    bool, typer.Option(help="Pick thresholds on half the samples, score on the other half.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Wide = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="Every column at its full width, whatever the terminal's (--json: every field).",
    ),
]
Confidence = Annotated[
    str,
    typer.Option(
        help="What a sample exits on: 'max' (the top-1 probability, the paper's), 'margin' "
        "(top-1 minus top-2) or 'learned' (a rule per saver trained on its top-k output, scored "
        "out of fold; needs saverzoo[search])."
    ),
]
InputSizes = Annotated[
    str | None,
    typer.Option(
        help="Also evaluate each model at these square test sizes (e.g. 128,160,192): the same "
        "weights, registered as NAME+SIZEpx."
    ),
]
ImagenetVal = Annotated[
    bool,
    typer.Option(
        "--imagenet-val",
        help="ImageNet-1k validation: warn where a model's top-1 is far from timm's published one.",
    ),
]


def keep_signal(session, dataset: str, confidence: str) -> None:
    """The CLI computes every pair on a confidence signal the dataset does not keep yet."""
    from db.queries import get_dataset
    from search.service import SaverSearch, add_signal

    data = get_dataset(session, dataset)
    if confidence not in (data.confidence_signals or ["max"]):
        with progress_bar(f"computing every pair on {confidence} confidence") as update:
            add_signal(session, data, confidence, SaverSearch(), update)


def keep_chains(session, dataset: str, query: SaverQuery) -> None:
    """Search again the three-model cascades whose inputs changed (all of them the first time)."""
    from db.queries import get_dataset
    from search.chain_service import refresh_chains
    from search.service import SaverSearch

    data = get_dataset(session, dataset)
    with progress_bar("searching three-model cascades") as update:
        refresh_chains(session, data, SaverSearch(), query.candidates, update)


def keep_budget(session, dataset: str, query: SaverQuery) -> None:
    """Unlike the HTTP API, the CLI computes a budget the dataset does not keep yet."""
    from db.queries import get_dataset
    from search.parameters import budget_key
    from search.service import SaverSearch, add_budget

    data = get_dataset(session, dataset)
    cp, kept = budget_key(data, query.criterion, query.max_drop)
    if not kept:
        with progress_bar(f"computing the {query.max_drop:g}-point budget") as update:
            add_budget(session, data, cp, SaverSearch(), update)
