"""``saverzoo demo``: the whole product on real data, in one work directory.

Handwritten digits (scikit-learn's, real scans) become JPEG shards in a local SeaweedFS; a zoo of
timm architectures is trained on the CPU and registered through ``models add``; a sweep on an
embedded Ray evaluates every model on every shard; the best saver of every model is printed,
in-sample and held out, with a plot of the zoo's cost against accuracy and each base's saver
trade-off. Everything lives under the work directory (the SQLite database included); trained
checkpoints and shards are kept, so a second run only evaluates what is missing.

What it prints is what a newcomer needs, in lines of at most 100 columns: one line per set-up
step (the commands' own output is kept out), then the queries as a user would type them with
their tables, where the picture is, and what to type next. ``orchestrator.demo.excerpt`` copies
the queries' part into the README.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from cluster.errors import ServiceError
from cluster.localstore import LocalObjectStore, free_port_block
from cluster.settings import get_settings
from orchestrator.demo import WIDTH
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
    """A query, shown as the user would type it, then its output."""
    console.print()
    for line in command_lines(["saverzoo", *(shlex.quote(str(a)) for a in args)], prompt="$ "):
        console.print(line, style="bold cyan", highlight=False, markup=False)
    _run(cli, *args)


def command_lines(words: list[str], prompt: str = "", width: int = WIDTH) -> list[str]:
    """A shell command (its words quoted already) in lines of at most ``width`` characters, each
    but the last continued with a backslash."""
    lines, line = [], prompt + words[0]
    for word in words[1:]:
        if len(line) + 1 + len(word) + 2 > width:
            lines.append(line + " \\")
            line = " " * (len(prompt) + 4) + word
        else:
            line += " " + word
    return [*lines, line]


def _quietly(cli: CommandLine, *args: object) -> None:
    """A set-up step: its output is kept out of the demo's (errors still reach stderr)."""
    with contextlib.redirect_stdout(io.StringIO()):
        _run(cli, *args)


def _run(cli: CommandLine, *args: object) -> None:
    code = cli([str(a) for a in args], standalone_mode=False)
    if isinstance(code, int) and code != 0:  # click returns an exit code instead of exiting
        raise ServiceError(f"`saverzoo {shlex.join(str(a) for a in args)}` failed (exit {code})")


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


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
        f"[bold]saverzoo demo[/] in {escape(shown(workdir))}: {len(zoo)} timm models trained on "
        f"handwritten digits, {epochs} epoch{'s' if epochs != 1 else ''} each",
        markup=True,
        highlight=False,
    )
    store.up()
    try:
        train_set, val_set = digits()
        write_image_folder(val_set, workdir / "digits-val")
        _quietly(
            cli,
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
        shards = -(-len(val_set) // SHARD_SIZE)
        console.print(
            f"  data:  {len(val_set)} validation digits, {shards} WebDataset shards in a local "
            "S3 store",
            highlight=False,
        )
        _train_zoo(workdir, console, cli, zoo, train_set, epochs)
        console.print(
            f"  zoo:   {len(zoo)} models trained on {len(train_set):,} digits, registered by "
            "`saverzoo models add`",
            highlight=False,
        )
        models_list = ",".join(f"demo-{a}" for a in zoo)
        _quietly(cli, "sweep", "submit", "--models", models_list, "--dataset", DATASET, "--wait")
        console.print(
            "  sweep: every model on every shard, by `saverzoo sweep submit` on an embedded Ray\n"
            "\nA saver answers the samples it is sure of (top-1 probability above its threshold) "
            "and passes\nthe others to its base: saving % is the share of the base's compute "
            "saved, top-1 % the pair's.",
            highlight=False,
        )
        _cli(cli, console, "savers", "best", "--dataset", DATASET)
        _cli(cli, console, "savers", "best", "--dataset", DATASET, "--max-drop", "0.5")
        _cli(cli, console, "savers", "best", "--dataset", DATASET, "--max-drop", "0.5", "--holdout")
        plot, (base, saver) = _plot(workdir)
    finally:
        store.down()
    database = workdir / "saverzoo.db"
    inside = shown(database) != str(database)  # under the current folder: $PWD/...
    where = f"$PWD/{shlex.quote(shown(database))}" if inside else shlex.quote(str(database))
    next_steps = [
        ["export", f"SAVERZOO_DATABASE_URL=sqlite:///{where}"],
        ["saverzoo", "savers", "show", shlex.quote(base), "--dataset", DATASET, "--holdout"],
        [
            "saverzoo",
            "savers",
            "curve",
            *map(shlex.quote, (base, saver)),
            "--dataset",
            DATASET,
            "--plot",
            "curve.png",
        ],
        ["saverzoo", "savers", "best", "--dataset", DATASET, "--max-drop", "1", "--json"],
        ["saverzoo", "report", "--dataset", DATASET, "--out", "report"],
    ]
    console.print(
        f"\nThe zoo's cost against accuracy, and each base with its saver: {shown(plot)}\n"
        "What to type next (`saverzoo --help` lists every command):",
        highlight=False,
        markup=False,
    )
    for words in next_steps:
        for line in command_lines(words, prompt="  "):
            console.print(line, highlight=False, markup=False)


def _train_zoo(
    workdir: Path, console: Console, cli: CommandLine, zoo, train_set, epochs: int
) -> None:
    """Train what has no checkpoint yet (an interrupted training starts over), then register."""
    checkpoints = workdir / "checkpoints"
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
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
        _quietly(
            cli,
            "models",
            "add",
            f"demo-{arch}",
            "--arch",
            arch,
            "--checkpoint",
            checkpoint,
            *data_options,
        )


def _plot(workdir: Path) -> tuple[Path, tuple[str, str]]:
    """Cost against accuracy of every model, and each base's trade-off with its best saver; and
    the pair to look at next: the dearest base with a saver (else the dearest and the cheapest
    model)."""
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
    saved = [(r["base"], r["saver"]) for r in rows if r["saver"]]
    by_cost = [m["name"] for m in models]
    return path, saved[-1] if saved else (by_cost[-1], by_cost[0])


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
