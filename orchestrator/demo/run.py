"""``saverzoo demo``: the whole product on real data, in one work directory.

Handwritten digits (scikit-learn's, real scans) become JPEG shards in a local SeaweedFS; a zoo of
timm architectures is trained on the CPU and registered through ``models add``; a sweep on an
embedded Ray evaluates every model on every shard; the best saver of every model is printed,
in-sample and held out, with a plot of the zoo's cost against accuracy and each base's saver
trade-off. Everything lives under the work directory (the SQLite database included); trained
checkpoints and shards are kept, so a second run only evaluates what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from cluster.localstore import LocalObjectStore, free_port_block
from cluster.settings import get_settings
from orchestrator.demo.data import DATA_CONFIG, EPOCHS, ZOO, digits, train, write_image_folder

# The saverzoo command line, handed in by the ``demo`` command (the demo drives the commands a
# user would type, and the command line sits above it).
CommandLine = Callable[..., object]
DATASET = "digits-val"
BUCKET_URL = "s3://saverzoo-demo/digits-val"
SHARD_SIZE = 120


def _use_workdir(workdir: Path, port: int) -> None:
    """Point this process's settings (and so the workers') at the work directory."""
    os.environ["SAVERZOO_DATABASE_URL"] = f"sqlite:///{workdir / 'saverzoo.db'}"
    os.environ["SAVERZOO_OBJECTSTORE_DIR"] = str(workdir / "objectstore")
    os.environ["SAVERZOO_OBJECTSTORE_PORT"] = str(port)
    os.environ.pop("SAVERZOO_S3_ENDPOINT_URL", None)  # the demo's own store, not another
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded
    get_settings.cache_clear()


def _cli(cli: CommandLine, console: Console, *args: object) -> None:
    console.print(f"[bold cyan]$ saverzoo {' '.join(str(a) for a in args)}[/]")
    cli([str(a) for a in args], standalone_mode=False)


def run_demo(
    workdir: Path,
    console: Console,
    cli: CommandLine,
    *,
    fresh: bool = False,
    epochs: int = EPOCHS,
    models: int = len(ZOO),
) -> None:
    workdir = workdir.resolve()
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    zoo = ZOO[:models]
    state_file = workdir / "objectstore-port"
    port = int(state_file.read_text()) if state_file.exists() else free_port_block()
    state_file.write_text(str(port))
    _use_workdir(workdir, port)
    store = LocalObjectStore(workdir / "objectstore", port)
    console.print(
        f"[bold]saverzoo demo[/] in {workdir}: {len(zoo)} models, digits, {epochs} epochs"
    )
    store.up()
    try:
        train_set, val_set = digits()
        write_image_folder(val_set, workdir / "digits-val")
        _cli(
            cli,
            console,
            "datasets",
            "make-shards",
            workdir / "digits-val",
            "--out",
            BUCKET_URL,
            "--name",
            DATASET,
            "--shard-size",
            SHARD_SIZE,
        )
        _train_zoo(workdir, console, cli, zoo, train_set, epochs)
        _cli(
            cli,
            console,
            "sweep",
            "submit",
            "--models",
            ",".join(f"demo-{a}" for a in zoo),
            "--dataset",
            DATASET,
            "--wait",
        )
        _cli(cli, console, "models", "list", "--dataset", DATASET)
        _cli(cli, console, "savers", "best", "--dataset", DATASET)
        _cli(cli, console, "savers", "best", "--dataset", DATASET, "--max-drop", "0.5")
        _cli(cli, console, "savers", "best", "--dataset", DATASET, "--max-drop", "0.5", "--holdout")
        plot = _plot(workdir)
    finally:
        store.down()
    database = os.environ["SAVERZOO_DATABASE_URL"]
    console.print(
        f"\nPlot of the zoo and its savers: {plot}\nQuery it yourself:\n"
        f"  export SAVERZOO_DATABASE_URL={database}\n"
        f"  saverzoo savers best --dataset {DATASET} --max-drop 1 --json\n"
        f"  saverzoo savers curve demo-resnet34 demo-resnet10t --dataset {DATASET} "
        "--plot curve.png"
    )


def _train_zoo(
    workdir: Path, console: Console, cli: CommandLine, zoo, train_set, epochs: int
) -> None:
    """Train what has no checkpoint yet (an interrupted training starts over), then register."""
    checkpoints = workdir / "checkpoints"
    with Progress(console=console, transient=True) as progress:
        for arch in zoo:
            path = checkpoints / f"{arch}-{epochs}ep.safetensors"
            if path.exists():
                continue
            task = progress.add_task(f"training {arch}", total=epochs)

            def advance(epoch: int, _loss: float, task=task) -> None:
                progress.update(task, completed=epoch)

            train(arch, train_set, path, epochs=epochs, on_epoch=advance)
    config = DATA_CONFIG
    data_options = [
        "--num-classes",
        "10",
        "--input-size",
        config["input_size"][-1],
        "--interpolation",
        config["interpolation"],
        "--crop-pct",
        config["crop_pct"],
        "--mean",
        ",".join(map(str, config["mean"])),
        "--std",
        ",".join(map(str, config["std"])),
    ]
    for arch in zoo:
        checkpoint = checkpoints / f"{arch}-{epochs}ep.safetensors"
        _cli(
            cli,
            console,
            "models",
            "add",
            f"demo-{arch}",
            "--arch",
            arch,
            "--checkpoint",
            checkpoint,
            *data_options,
        )


def _plot(workdir: Path) -> Path:
    """Cost against accuracy of every model, and each base's trade-off with its best saver."""
    from db.session import session_factory
    from orchestrator.reports.plots import plot_zoo
    from search.results import best_savers, curve

    with session_factory(os.environ["SAVERZOO_DATABASE_URL"]).begin() as session:
        from db.queries import get_dataset

        dataset = get_dataset(session, DATASET)
        rows = best_savers(session, dataset, criterion="budget", max_drop_centipoints=0)
        curves = [curve(session, dataset, r["base"], r["saver"]) for r in rows if r["saver"]]
        models = _model_points(session, dataset)
    path = plot_zoo(models, curves, workdir / "zoo.png")
    (workdir / "best-savers.json").write_text(json.dumps(rows, indent=2) + "\n")
    return path


def _model_points(session, dataset) -> list[dict]:
    """Name, GMACs and accuracy of every complete model of the dataset."""
    import numpy as np
    from sqlalchemy import select

    from db.models import Model
    from db.queries import complete_model_ids, dataset_samples, top1_predictions

    ids = complete_model_ids(session, dataset)
    models = session.scalars(select(Model).where(Model.id.in_(ids)).order_by(Model.gmacs)).all()
    classes, _ = top1_predictions(session, dataset, [m.id for m in models])
    labels = dataset_samples(session, dataset).labels
    return [
        {"name": m.name, "gmacs": m.gmacs, "accuracy": float(np.mean(classes[i] == labels))}
        for i, m in enumerate(models)
    ]
