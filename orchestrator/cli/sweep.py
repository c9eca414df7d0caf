"""``saverzoo sweep``: submit zoo sweeps to Ray, follow, resume and cancel them."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cluster import validate
from orchestrator.cli.console import (
    USER_ERRORS,
    err,
    fail,
    out,
    print_json,
    print_prose,
    print_table,
    say_error,
    settings_or_fail,
    transaction,
    user_errors,
)
from orchestrator.cli.options import InputSizes, Wide
from orchestrator.sweeps.plan import DEFAULT_BUNDLE_SECONDS

if TYPE_CHECKING:
    from cluster.settings import Settings

sweep_app = typer.Typer(help="Zoo sweeps on a Ray cluster: every missing chunk, exactly once.")

RayAddress = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster: host:port of its head, or auto; http://HOST:8265 submits a Ray Job; "
        "none: an embedded local Ray.",
    ),
]
Wait = Annotated[
    bool, typer.Option(help="Run in the foreground with a progress bar until the sweep ends.")
]
LogFile = Annotated[
    Path | None,
    typer.Option(
        help="With --wait: the driver's log records (INFO and above) go to this file, rotated at "
        "10 MiB with 5 older files kept, instead of warnings on standard error. A sweep started "
        "in the background logs to <data dir>/sweeps/sweep-N.log this way.",
        dir_okay=False,
    ),
]
logger = logging.getLogger(__name__)


@sweep_app.command("submit")
def sweep_submit(
    models: Annotated[
        list[str],
        typer.Option(help="Names, timm patterns or @FILE, comma-separated; repeatable."),
    ],
    dataset: Annotated[str, typer.Option(help="A registered dataset.")],
    exclude: Annotated[
        list[str] | None, typer.Option(help="Patterns of models to leave out; repeatable.")
    ] = None,
    input_sizes: InputSizes = None,
    ray_address: RayAddress = None,
    wait: Wait = False,
    log_file: LogFile = None,
    device: Annotated[str, typer.Option(help="cpu or cuda: a worker per GPU.")] = "cpu",
    mode: Annotated[str | None, typer.Option(help="fast or reference (default per device).")] = (
        None
    ),
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    random_weights: Annotated[bool, typer.Option(help="Random weights (recorded).")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile each model.")] = False,
    max_attempts: Annotated[int, typer.Option(help="Tries per work unit before it fails.")] = 3,
    cpus_per_worker: Annotated[
        int, typer.Option(help="On a cluster without GPUs: CPUs per worker.")
    ] = 1,
    workers: Annotated[int | None, typer.Option(help="At most this many workers.")] = None,
    bundle_seconds: Annotated[
        float,
        typer.Option(
            help="Models share a unit until their forward passes over a shard would "
            "take this long on an H200 (modelled from GMACs); on a large cluster bundles "
            "of small models stop sooner, at half of one worker's share."
        ),
    ] = DEFAULT_BUNDLE_SECONDS,
    bundle_gmacs: Annotated[
        float | None,
        typer.Option(help="Bundle by GMACs instead: models of one data config up to this cost."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Run again with the same key, the command finds its first sweep."),
    ] = None,
) -> None:
    """Submit a sweep: these models on this dataset, every missing chunk computed once."""
    from orchestrator.sweeps.launch import check_address
    from orchestrator.sweeps.store import SweepOptions, submit, submit_once
    from workers.spec import input_sizes as parse_input_sizes

    options = SweepOptions(
        device=device,
        mode=mode,
        batch_size=batch_size,
        random_weights=random_weights,
        compile=compile,
        max_attempts=max_attempts,
        bundle_gmacs=bundle_gmacs,
        cpus_per_worker=cpus_per_worker,
        max_workers=workers,
        bundle_seconds=bundle_seconds,
    )
    settings = settings_or_fail()
    with user_errors():
        sizes = parse_input_sizes(input_sizes)
    ray_address = ray_address or settings.ray_address
    check_log_file(log_file, wait, ray_address)
    key = idempotency_key
    if key is None or not _submitted_before(settings, key):  # a repeat starts nothing
        with user_errors():
            check_address(ray_address)
    with transaction(settings) as session:
        if key is None:
            sweep = submit(
                session, dataset, models, options, exclude=exclude or [], input_sizes=sizes
            )
            created = True
        else:
            sweep, created = submit_once(
                session, key, dataset, models, options, exclude=exclude or [], input_sizes=sizes
            )
        sweep_id, count, state = sweep.id, len(sweep.models), sweep.state
    if not created:
        out.print(
            f"sweep {sweep_id} was submitted with this key before ({state}); follow it "
            f"with `saverzoo sweep status {sweep_id}`"
        )
        return
    out.print(f"sweep {sweep_id} submitted: {count} models on {dataset}")
    start_sweep(settings, sweep_id, ray_address, wait, log_file)


def _submitted_before(settings: Settings, key: str) -> bool:
    from orchestrator.sweeps.store import keyed_sweep

    with user_errors():
        validate.request_key(key, "--idempotency-key")
    with transaction(settings) as session:
        return keyed_sweep(session, key) is not None


@sweep_app.command("resume")
def sweep_resume(
    sweep_id: Annotated[int, typer.Argument(help="The sweep to finish.")],
    ray_address: RayAddress = None,
    wait: Wait = False,
    log_file: LogFile = None,
) -> None:
    """Finish a sweep whose driver stopped: only the missing chunks are computed."""
    from orchestrator.sweeps.store import status

    settings = settings_or_fail()
    check_log_file(log_file, wait, ray_address or settings.ray_address)
    with transaction(settings) as session:
        status(session, sweep_id)  # an unknown id fails here, in one line
    start_sweep(settings, sweep_id, ray_address, wait, log_file)


def check_log_file(log_file: Path | None, wait: bool, address: str | None) -> None:
    """A log file is the driver's, so only where the driver runs here."""
    from cluster.userfiles import output_file
    from orchestrator.sweeps.launch import is_jobs_url

    if log_file is None:
        return
    if not wait or is_jobs_url(address):
        raise fail(
            "--log-file is where a driver running here logs: add --wait (a sweep started in "
            "the background logs to <data dir>/sweeps/sweep-N.log, a Ray Job to `ray job logs`)"
        )
    with user_errors():
        output_file(log_file, "--log-file")


def start_sweep(
    settings: Settings,
    sweep_id: int,
    address: str | None,
    wait: bool,
    log_file: Path | None = None,
) -> None:
    """Run the sweep: here with a progress bar (wait), else in the background or as a Ray Job.

    Here, the driver's log records go to ``log_file`` (rotated), else its warnings to standard
    error, one line each."""
    from cluster.logs import SweepLog
    from orchestrator.sweeps.launch import is_jobs_url, start_in_background
    from orchestrator.sweeps.store import DONE, status

    address = address or settings.ray_address
    if not wait or is_jobs_url(address):
        with user_errors():
            out.print(start_in_background(settings, sweep_id, address))
        return
    log = SweepLog(logger, sweep_id)
    with driver_log(log_file):
        try:
            state = _drive(settings, sweep_id, address)
        except USER_ERRORS as error:
            if log_file is not None:  # the console hears it from fail
                log.error("%s", error)
            raise fail(str(error)) from None
        except BaseException:  # a crash's traceback in the log file (the console has its line)
            if log_file is not None:
                log.exception("the driver stopped")
            raise
        report = None
        if state != DONE:
            with transaction(settings) as session:
                report = status(session, sweep_id)
        out.print(f"sweep {sweep_id}: {state}")
        # The command's result, as its last record: INFO, which a terminal shows on stdout.
        log.info("%s", f"{state}: {report['error']}" if report and report["error"] else state)
    if report is not None:
        if report["error"]:
            say_error(report["error"])
        for failure in report["failures"]:
            if failure["attempts"] >= report["options"]["max_attempts"]:
                err.print(
                    f"  {', '.join(failure['models'])} on shard {failure['shard']}: "
                    f"{failure['error']}",
                    soft_wrap=True,
                )
        raise typer.Exit(code=1)


@contextmanager
def driver_log(log_file: Path | None) -> Iterator[None]:
    """While a driver runs here: its records at INFO and above to ``log_file`` (which rotates),
    or without one its warnings and errors on standard error, one line each."""
    from cluster.logs import log_to_file

    root = logging.getLogger()
    level = root.level
    handler = log_to_file(log_file) if log_file is not None else ConsoleRecords()
    if log_file is None:
        root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


class ConsoleRecords(logging.Handler):
    """Warnings and errors as ``warning: sweep 3 unit 12: …`` on standard error, one line each,
    above the progress bar (rich's console keeps the bar below what is printed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().strip().splitlines() or [""]
            cause = f" ({record.exc_info[1]!r})" if record.exc_info else ""
            err.print(
                f"{record.levelname.lower()}: {text[0]}{cause}",
                style="yellow" if record.levelno < logging.ERROR else "red",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        except Exception:  # noqa: BLE001 - logging's own rule: a record never ends the command
            self.handleError(record)


def _drive(settings: Settings, sweep_id: int, address: str | None) -> str:
    """Run the sweep's driver here, with a progress bar of images evaluated."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cluster.ray_cluster import check_worker_database, connected, secret_environment
    from db.session import session_factory
    from orchestrator.sweeps.driver import SweepDriver  # imports Ray: only when a sweep runs
    from orchestrator.sweeps.launch import failing_sweep_on_error

    check_worker_database(settings)  # a Ray Job's driver: the submitter's database
    sessions = session_factory(settings.database_url)
    with ExitStack() as stack:
        with failing_sweep_on_error(sessions, sweep_id):
            secrets = secret_environment(settings)
            stack.enter_context(connected(address, node_ip=settings.ray_node_ip, secrets=secrets))
        bar = stack.enter_context(
            Progress(
                TextColumn(f"sweep {sweep_id}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("units · {task.fields[rate]:,.0f} img/s"),
                TimeElapsedColumn(),
                console=err.console,
                transient=True,
                disable=not err.console.is_terminal,  # no bar, no blank line in a log
            )
        )
        task = bar.add_task("sweep", total=None, rate=0.0)

        def update(progress) -> None:
            bar.update(
                task,
                completed=progress.units_done,
                total=progress.units_total,
                rate=progress.images_per_s,
            )

        return SweepDriver(sessions, settings, sweep_id, update).run()


@sweep_app.command("status")
def sweep_status(
    sweep_id: Annotated[int | None, typer.Argument(help="A sweep (default: the latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    wide: Wide = False,
) -> None:
    """Per-model progress, throughput, ETA and failures of a sweep."""
    from orchestrator.cli.tables import NAME, NUMBER, Column, Row, Table
    from orchestrator.sweeps.store import list_sweeps, status

    with transaction() as session:
        if sweep_id is None:
            sweeps = list_sweeps(session)
            if not sweeps:
                raise fail("no sweeps yet; submit one with `saverzoo sweep submit`")
            sweep_id = sweeps[-1]["id"]
        report = status(session, sweep_id)
    if as_json:
        print_json(report)
        return
    columns = [Column("model", NAME), Column("shards done", NUMBER)]
    rows = [
        Row([name, f"{progress['shards_done']}/{progress['shards']}"])
        for name, progress in report["models"].items()
    ]
    title = f"sweep {report['id']} on {report['dataset']}: {report['state']}"
    print_table(Table(columns, rows, title), wide=wide)
    units = report["units"]
    rate = report["images_per_worker_s"]
    eta = report["eta_s"]
    print_prose(
        f"units: {units['done']} done, {units['running']} running, {units['pending']} pending, "
        f"{units['failed']} failed"
        + (f" · {rate:,.0f} img/s per worker" if rate else "")
        + (f" · about {eta / 60:.1f} min left" if eta else "")
    )
    for warning in report["accuracy_warnings"]:
        err.print(f"warning: {warning['message']}", style="yellow", soft_wrap=True)
    if report["search_error"]:
        err.print(search_failure(report), style="yellow", markup=False, soft_wrap=True)
    if report["error"]:
        say_error(report["error"])
    for failure in report["failures"]:
        where = f"{', '.join(failure['models'])} on shard {failure['shard']}"
        err.print(f"  {where} (attempt {failure['attempts']}): {failure['error']}", soft_wrap=True)


def search_failure(report: dict) -> str:
    """The saver search's error of a sweep's status, in one line with what to do."""
    dataset = shlex.quote(report["dataset"])
    return (
        f"warning: the saver search failed during this sweep: {report['search_error']}; once "
        f"its cause is fixed, `saverzoo savers refresh --dataset {dataset}` computes the pairs "
        "it missed"
    )


@sweep_app.command("list")
def sweep_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    wide: Wide = False,
):
    """Every sweep, oldest first."""
    from orchestrator.cli.tables import NAME, NUMBER, TEXT, Column, Row, Table
    from orchestrator.sweeps.store import list_sweeps

    with transaction() as session:
        sweeps = list_sweeps(session)
    if as_json:
        print_json(sweeps)
        return
    columns = [
        Column("id", NUMBER),
        Column("dataset", NAME),
        Column("state", TEXT),
        Column("models", NUMBER, 1),
        Column("submitted at", TEXT, 5),
        Column("submitted by", NAME, 6),
        Column("finished at", TEXT, 7),
    ]
    rows = [
        Row(
            [
                str(s["id"]),
                s["dataset"],
                s["state"],
                str(s["models"]),
                s["submitted_at"] or "-",
                s["submitted_by"] or "-",
                s["finished_at"] or "-",
            ]
        )
        for s in sweeps
    ]
    print_table(Table(columns, rows, "sweeps"), wide=wide)


@sweep_app.command("cancel")
def sweep_cancel(sweep_id: Annotated[int, typer.Argument(help="The sweep to stop.")]) -> None:
    """Stop a sweep: its driver stops the workers; stored chunks stay."""
    from orchestrator.sweeps.store import cancel

    with transaction() as session:
        cancel(session, sweep_id)
    out.print(f"sweep {sweep_id} cancelled")
