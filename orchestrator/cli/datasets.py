"""``saverzoo datasets`` and ``saverzoo objectstore``: evaluation data and where it is kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cluster.validate import MAX_SHARD_SIZE, integer
from cluster.validate import name as valid_name
from orchestrator.cli.console import (
    fail,
    out,
    print_json,
    print_prose,
    print_table,
    progress_bar,
    settings_or_fail,
    transaction,
    user_errors,
)
from orchestrator.cli.options import ImagenetVal, Wide

if TYPE_CHECKING:  # what a command needs is imported in its body: `datasets list` starts at once
    from cluster.localstore import LocalObjectStore
    from orchestrator.ingest.datasets import DatasetSpec
    from workers.shard_writer import WrittenShard

datasets_app = typer.Typer(help="Evaluation datasets: WebDataset shards on disk or in S3.")
objectstore_app = typer.Typer(help="The local S3 object store (SeaweedFS on 127.0.0.1).")


def _register(spec: DatasetSpec, shards: list[WrittenShard]) -> None:
    from orchestrator.ingest.datasets import register

    settings = settings_or_fail()
    with transaction(settings) as session:
        dataset, created = register(
            session,
            spec,
            shards,
            budgets=settings.search_budgets,
            holdout_fraction=settings.holdout_fraction,
        )
        samples, failed = dataset.num_samples, sum(len(s.failed) for s in shards)
    state = "registered" if created else "already registered, unchanged"
    note = f"; {failed} samples do not decode (see `saverzoo datasets show {spec.name}`)"
    out.print(
        f"dataset {spec.name!r} {state}: {len(shards)} shards, {samples} samples"
        + (note if failed else "")
    )


@datasets_app.command("make-shards")
def make_shards_command(
    src: Annotated[
        Path, typer.Argument(help="ImageFolder, flat folder + --labels, or .tar files.")
    ],
    name: Annotated[str, typer.Option(help="Dataset name (also the shard file prefix).")],
    out_url: Annotated[
        str | None, typer.Option("--out", help="s3://bucket/prefix or a local folder.")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Labels file of a flat folder: one integer per line.")
    ] = None,
    shard_size: Annotated[int, typer.Option(help="Samples per shard.")] = 1000,
    split: Annotated[str, typer.Option(help="Split name in the timm manifest.")] = "validation",
    num_classes: Annotated[int | None, typer.Option(help="Default: largest label + 1.")] = None,
    imagenet_val: ImagenetVal = False,
) -> None:
    """Write SRC as WebDataset shards (original JPEG bytes) and register the dataset."""
    from orchestrator.ingest.datasets import (
        DatasetSpec,
        check_name,
        check_shard_list,
        checked_labels,
        read_for_registration,
    )
    from workers.shard_writer import brace_urls, make_shards, plan_shards
    from workers.sources import find_source, tar_files

    with user_errors():
        valid_name(name, "dataset name")  # it becomes shard file and object names
        integer(shard_size, "--shard-size", 1, MAX_SHARD_SIZE)
        if src.is_dir() and tar_files(src) and not any(p.is_dir() for p in src.iterdir()):
            if out_url is not None or labels is not None:
                raise fail(
                    f"{src} holds .tar shards: they are registered where they are, as "
                    "they are; drop --out and --labels"
                )
            found = [str(p.resolve()) for p in tar_files(src)]
            urls = check_shard_list(found, settings_or_fail().max_shards)
            with progress_bar("reading shards") as update:
                shards = read_for_registration(urls, update)
            # webdataset's expand_urls joins several URL patterns with "::".
            spec = DatasetSpec(name, "::".join(urls), num_classes, f"tars:{src}", imagenet_val)
            _register(spec, shards)
            return
        if out_url is None:
            raise fail("--out is required to write shards (s3://bucket/prefix or a folder)")
        source = find_source(src, labels)
        plans = plan_shards(source, name, shard_size)
        classes = num_classes if num_classes is not None else source.num_classes
        checked_labels(DatasetSpec(name, "", classes, source.label_source), plans)
        with transaction() as session:  # before writing: never overwrite a registered dataset
            check_name(session, name, plans)
        with progress_bar(f"writing {name} shards") as update:
            shards = make_shards(
                source, name, out_url, shard_size=shard_size, split=split, progress=update
            )
        base = shards[0].url.rsplit("/", 1)[0]
        brace = brace_urls(base, name, len(shards))
        spec = DatasetSpec(name, brace, classes, source.label_source, imagenet_val)
    _register(spec, shards)


@datasets_app.command("add")
def datasets_add(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    shards: Annotated[
        str, typer.Option(help="Shard URLs, e.g. 's3://b/p/val-{000000..000063}.tar'.")
    ],
    num_classes: Annotated[int | None, typer.Option(help="Default: largest label + 1.")] = None,
    imagenet_val: ImagenetVal = False,
) -> None:
    """Register existing WebDataset shards (read once for their keys, labels and bad samples)."""
    from cluster.validate import expand_shards
    from orchestrator.ingest.datasets import DatasetSpec, read_for_registration

    with user_errors():
        valid_name(name, "dataset name")
        urls = expand_shards(shards, settings_or_fail().max_shards)
        with progress_bar("reading shards") as update:
            written = read_for_registration(urls, update)
    _register(DatasetSpec(name, shards, num_classes, f"tars:{shards}", imagenet_val), written)


@datasets_app.command("list")
def datasets_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    wide: Wide = False,
):
    """Registered datasets."""
    from orchestrator.answers import datasets, json_ready
    from orchestrator.cli.tables import NAME, NUMBER, TEXT, Column, Row, Table

    with transaction() as session:
        rows = json_ready(datasets(session))
    if as_json:
        print_json(rows)
        return
    columns = [
        Column("dataset", NAME),
        Column("samples", NUMBER),
        Column("models", NUMBER, 1),
        Column("classes", NUMBER, 5),
        Column("shards", NUMBER, 6),
        Column("budgets (pts)", TEXT, 7),
        Column("location", NAME, 2),
    ]
    table_rows = [
        Row(
            [
                row["name"] + (" (ImageNet-1k val)" if row["imagenet_val"] else ""),
                str(row["num_samples"]),
                str(row["num_models"]),
                str(row["num_classes"]),
                str(row["num_shards"]),
                ", ".join(f"{b:g}" for b in row["budgets"]),
                row["shards"],
            ]
        )
        for row in rows
    ]
    print_table(Table(columns, table_rows), wide=wide)


@datasets_app.command("show")
def datasets_show(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    wide: Wide = False,
) -> None:
    """A dataset's shards: where they are, sample counts, samples that do not decode."""
    from sqlalchemy import select

    from db.models import DatasetShard
    from db.queries import get_dataset
    from orchestrator.cli.tables import NAME, NUMBER, Column, Row, Table

    with transaction() as session:
        dataset = get_dataset(session, name)
        shards = session.scalars(
            select(DatasetShard)
            .where(DatasetShard.dataset_id == dataset.id)
            .order_by(DatasetShard.shard_index)
        ).all()
        info: dict[str, Any] = {
            "name": dataset.name,
            "shards": dataset.shard_urls,
            "num_samples": dataset.num_samples,
            "num_classes": dataset.num_classes,
            "label_source": dataset.label_source,
            "imagenet_val": dataset.imagenet_val,
            "shard_list": [
                {
                    "index": s.shard_index,
                    "url": s.url,
                    "num_samples": s.num_samples,
                    "failed_samples": s.failed_samples,
                }
                for s in shards
            ],
        }
    if as_json:
        print_json(info)
        return
    print_prose(
        f"{info['name']}: {info['num_samples']} samples, {info['num_classes']} classes, "
        f"labels from {info['label_source']}"
    )
    print_prose(f"shards: {info['shards']}")
    if not info["shard_list"]:
        return
    columns = [
        Column("shard", NUMBER),
        Column("samples", NUMBER),
        Column("failed", NUMBER, 1),
        Column("url", NAME, 2),
    ]
    rows = [
        Row(
            [
                str(shard["index"]),
                str(shard["num_samples"]),
                str(len(shard["failed_samples"])),
                shard["url"],
            ]
        )
        for shard in info["shard_list"]
    ]
    print_table(Table(columns, rows), wide=wide)
    for shard in info["shard_list"]:
        for key, reason in shard["failed_samples"].items():
            print_prose(f"  sample {key} of shard {shard['index']} does not decode: {reason}")


def _local_store() -> LocalObjectStore:
    from cluster.localstore import LocalObjectStore

    settings = settings_or_fail()
    return LocalObjectStore(settings.objectstore_dir, settings.objectstore_port)


@objectstore_app.command("up")
def objectstore_up() -> None:
    """Start the local SeaweedFS object store (127.0.0.1 only) unless it runs."""
    store = _local_store()
    with user_errors():
        state = store.up()
    out.print(
        f"object store running at {state.endpoint} (pid {state.pid}, data in {store.directory}); "
        "saverzoo uses it while SAVERZOO_S3_ENDPOINT_URL is unset"
    )


@objectstore_app.command("down")
def objectstore_down() -> None:
    """Stop the local object store."""
    store = _local_store()
    out.print("object store stopped" if store.down() else "object store was not running")


@objectstore_app.command("status")
def objectstore_status() -> None:
    """Whether the local object store runs, and where."""
    store = _local_store()
    state = store.status()
    if state is None:
        out.print(f"object store not running (data folder {store.directory})")
        raise typer.Exit(code=3)
    out.print(f"object store running at {state.endpoint} (pid {state.pid})")
