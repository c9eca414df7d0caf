"""``saverzoo evaluate`` (in this process, no Ray) and ``saverzoo models add``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cluster import validate
from cluster.errors import InputError
from orchestrator.cli.console import (
    err,
    out,
    progress_bar,
    settings_or_fail,
    transaction,
    user_errors,
)
from orchestrator.cli.options import InputSizes

if TYPE_CHECKING:  # torch and timm load in the command's body, not at start-up
    from workers.spec import ModelSpec


def evaluate(
    models: Annotated[
        list[str], typer.Option(help="Names or timm patterns, comma-separated; repeatable.")
    ],
    dataset: Annotated[str, typer.Option(help="A registered dataset.")],
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    mode: Annotated[
        str | None,
        typer.Option(
            help="fast: decode once, preprocess on the device (default on a GPU); "
            "reference: timm's own eval transform (default on the CPU)."
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Images per forward pass (smaller on running out of memory).")
    ] = 64,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile each model.")] = False,
    random_weights: Annotated[
        bool, typer.Option(help="Random weights instead of pretrained ones (recorded as such).")
    ] = False,
    input_sizes: InputSizes = None,
) -> None:
    """Evaluate models on a dataset in this process and update the best savers."""
    from db.queries import get_dataset
    from db.session import session_factory
    from orchestrator.ingest.evaluation import evaluate_dataset
    from orchestrator.sweeps.store import check_readable
    from workers.build import with_variants
    from workers.evaluate import EvalOptions
    from workers.identity import resolve_specs
    from workers.spec import input_sizes as parse_input_sizes

    settings = settings_or_fail()
    with user_errors():
        options = EvalOptions.choose(device, mode, batch_size, compile=compile)
        sizes = parse_input_sizes(input_sizes)
    # Everything that can refuse is checked before a model is registered: a refusal writes nothing.
    with transaction(settings) as session:
        check_readable(session, get_dataset(session, dataset))
        specs = with_variants(resolve_specs(session, models, random_weights=random_weights), sizes)
    with user_errors(), progress_bar(f"evaluating {len(specs)} models") as update:
        summary = evaluate_dataset(
            session_factory(settings.database_url),
            dataset,
            specs,
            options=options,
            progress=update,
        )
    for name, reason in summary.failed.items():
        err.print(f"not evaluated: {name}: {reason}", style="bold red", soft_wrap=True)
    out.print(
        f"{dataset}: {len(summary.evaluated)} models evaluated on {summary.samples} samples"
        + (f" ({summary.undecodable} do not decode)" if summary.undecodable else "")
    )
    if summary.failed:
        raise typer.Exit(code=1)


def models_add(
    name: Annotated[str, typer.Argument(help="Your name for the model.")],
    arch: Annotated[str, typer.Option(help="timm architecture, e.g. resnet50.")],
    checkpoint: Annotated[Path, typer.Option(help="safetensors or .pth weights.")],
    num_classes: Annotated[int | None, typer.Option()] = None,
    input_size: Annotated[int | None, typer.Option(help="Square input size.")] = None,
    mean: Annotated[str | None, typer.Option(help="e.g. 0.485,0.456,0.406")] = None,
    std: Annotated[str | None, typer.Option(help="e.g. 0.229,0.224,0.225")] = None,
    crop_pct: Annotated[float | None, typer.Option()] = None,
    interpolation: Annotated[str | None, typer.Option(help="bilinear, bicubic or nearest.")] = None,
    input_sizes: InputSizes = None,
) -> None:
    """Register a local checkpoint (loaded with weights_only=True) and measure its cost.

    The same model registered again changes nothing; other weights, another architecture or
    data config under a registered name are refused.
    """
    from workers.evaluate import LoadedModel
    from workers.identity import checkpoint_id, register
    from workers.spec import input_sizes as parse_input_sizes

    with user_errors():
        spec = checkpoint_spec(
            name, arch, checkpoint, num_classes, input_size, mean, std, crop_pct, interpolation
        )
        sizes = parse_input_sizes(input_sizes)
        loaded = [LoadedModel.load(spec)]
        own = tuple(loaded[0].config["input_size"])
        loaded += [LoadedModel.load(spec.at_size(s)) for s in sizes if (3, s, s) != own]
        assert spec.checkpoint is not None  # checkpoint_spec always sets it
        identity = checkpoint_id(spec.checkpoint)
    with transaction() as session:
        for model in loaded:
            register(session, model.spec, model.config, model.profile, identity)
    for model in loaded:
        out.print(
            f"model {model.spec.name!r} registered: {arch}, {model.profile.params_m:.2f} M "
            f"parameters, {model.profile.gmacs:.3f} GMACs at {model.config['input_size']}"
        )


def checkpoint_spec(
    name: str,
    arch: str,
    checkpoint: Path,
    num_classes: int | None,
    input_size: int | None,
    mean: str | None,
    std: str | None,
    crop_pct: float | None,
    interpolation: str | None,
) -> ModelSpec:
    """The spec of ``models add``, every option checked (InputError on the first bad one)."""
    from workers.spec import ModelSpec, checked_overrides

    validate.name(name, "model name")
    if num_classes is not None:
        validate.integer(num_classes, "--num-classes", 1, validate.MAX_CLASSES)
    overrides = checked_overrides(
        {
            "input_size": None if input_size is None else (3, input_size, input_size),
            "mean": None if mean is None else _numbers(mean, "--mean"),
            "std": None if std is None else _numbers(std, "--std"),
            "crop_pct": crop_pct,
            "interpolation": interpolation,
        }
    )
    return ModelSpec(name, arch, "checkpoint", str(checkpoint.resolve()), num_classes, overrides)


def _numbers(text: str, what: str) -> tuple[float, ...]:
    """``0.5,0.5,0.5`` as numbers; what is not a number is an ``InputError`` naming the option."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"{what} {text!r}: give three numbers, e.g. 0.5,0.5,0.5") from None
