"""``saverzoo watch``: sweep what timm releases, once or on a schedule."""

from __future__ import annotations

import json
import re
import time
from typing import Annotated

import typer
from packaging.version import InvalidVersion, Version

from cluster.errors import InputError, ServiceError
from orchestrator.cli.console import (
    err,
    fail,
    out,
    print_json,
    print_prose,
    print_table,
    settings_or_fail,
    transaction,
)
from orchestrator.cli.options import Wide
from orchestrator.cli.sweep import LogFile, RayAddress, Wait, check_log_file, start_sweep

PYPI_TIMM = "https://pypi.org/pypi/timm/json"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_period(text: str) -> float:
    """Seconds of '30m', '24h', '1d' or '90s'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not match or float(match[1]) <= 0:
        raise InputError(f"--every {text!r}: use a number and a unit, e.g. 30m, 24h or 1d")
    return float(match[1]) * UNITS[match[2]]


def newest_on_pypi(url: str = PYPI_TIMM, timeout: float = 10.0) -> Version:
    """The newest release of timm that PyPI's JSON API lists."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            info = json.load(response)["info"]
        return Version(info["version"])
    except (OSError, ValueError, KeyError, InvalidVersion) as error:
        raise ServiceError(f"cannot read timm's newest version from {url}: {error}") from None


def watch(
    dataset: Annotated[str, typer.Option(help="The registered dataset to keep evaluated.")],
    models: Annotated[
        list[str],
        typer.Option(help="Pretrained tags to watch: names or patterns, comma-separated."),
    ],
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    every: Annotated[str | None, typer.Option(help="A pass every period, e.g. 24h.")] = None,
    ray_address: RayAddress = None,
    wait: Wait = False,
    log_file: LogFile = None,
    start: Annotated[
        bool, typer.Option(help="Start the sweep's driver (--no-start: only queue the sweep).")
    ] = True,
    device: Annotated[str, typer.Option(help="cpu or cuda (on the workers).")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    max_attempts: Annotated[int, typer.Option(help="Tries per work unit before it fails.")] = 3,
    workers: Annotated[int | None, typer.Option(help="At most this many workers.")] = None,
    check_pypi: Annotated[
        bool, typer.Option("--check-pypi", help="Also ask PyPI for a newer timm (network).")
    ] = False,
    pypi_url: Annotated[str, typer.Option(help="PyPI's JSON for timm.")] = PYPI_TIMM,
    as_json: Annotated[bool, typer.Option("--json", help="Print each pass's summary as JSON.")] = (
        False
    ),
    wide: Wide = False,
) -> None:
    """Sweep every pretrained tag that is new, or whose weights or data config changed."""
    from orchestrator.sweeps.store import SweepOptions
    from workers.identity import split_patterns

    if once == (every is not None):
        raise fail("give --once for one pass, or --every PERIOD (e.g. 24h) for a schedule")
    try:
        period = parse_period(every) if every else None
    except InputError as error:
        raise fail(str(error)) from None
    settings = settings_or_fail()
    address = ray_address or settings.ray_address
    if log_file is not None and not start:
        raise fail("--log-file is where the driver of a started sweep logs: drop --no-start")
    check_log_file(log_file, wait, address)
    options = SweepOptions(
        device=device, batch_size=batch_size, max_attempts=max_attempts, max_workers=workers
    )
    patterns = split_patterns(models)
    while True:
        try:
            if not (check_pypi and _pass_with_newer_timm(pypi_url, dataset, patterns, address)):
                sweep_id = _one_pass(settings, dataset, patterns, options, as_json, wide)
                if sweep_id is not None and start:
                    start_sweep(settings, sweep_id, address, wait, log_file)
        except typer.Exit as stop:
            if period is None or stop.exit_code == 0:
                raise
            err.print(f"this pass failed; the next one starts in {every}", style="yellow")
        if period is None:
            return
        time.sleep(period)


def _one_pass(
    settings, dataset: str, patterns: list[str], options, as_json: bool, wide: bool
) -> int | None:
    from sqlalchemy.exc import IntegrityError

    from orchestrator.sweeps.watch import watch_once

    try:
        with transaction(settings) as session:
            summary = watch_once(session, dataset, patterns, options)
    except IntegrityError:  # a watcher racing from the same state committed the same sweep first
        out.print("another watcher submitted this sweep at the same moment: nothing submitted")
        return None
    if as_json:
        print_json(summary.as_dict())
    else:
        _print_summary(summary, wide)
    return summary.sweep_id


def _print_summary(summary, wide: bool) -> None:
    from orchestrator.cli.tables import NAME, TEXT, Column, Row, Table

    snapshot = "new snapshot" if summary.new_snapshot else "registry unchanged"
    print_prose(
        f"timm {summary.timm_version}: {summary.entries} pretrained tags in scope "
        f"({snapshot} {summary.snapshot_id}) for {summary.dataset}"
    )
    rows = [Row([name, f"to sweep: {why}"]) for name, why in summary.changes]
    rows += [
        Row([name, "superseded: predictions kept, out of the search"])
        for name in summary.superseded
    ]
    if rows:
        print_table(Table([Column("model", NAME), Column("change", TEXT)], rows), wide=wide)
    skipped = ", ".join(f"{count} {why}" for why, count in summary.skipped.items())
    if skipped:
        print_prose(f"skipped: {skipped}")
    if summary.sweep_id is None:
        print_prose("nothing to sweep")
    else:
        print_prose(f"sweep {summary.sweep_id} submitted: {len(summary.changes)} models")


def _pass_with_newer_timm(url: str, dataset: str, patterns: list[str], address: str | None) -> bool:
    """When PyPI has a timm newer than the installed one, run this pass with it as a Ray Job;
    whether it did."""
    import timm

    try:
        newest = newest_on_pypi(url)
    except ServiceError as error:
        raise fail(str(error)) from None
    installed = Version(timm.__version__)
    if newest <= installed:
        out.print(f"timm {installed} is installed; PyPI's newest is {newest}")
        return False
    from orchestrator.sweeps.launch import is_jobs_url, submit_watch_job

    if not is_jobs_url(address):
        raise fail(
            f"PyPI has timm {newest}, newer than the installed {installed}: run the watcher "
            f"with it as a Ray Job (--ray-address http://HEAD:8265), or `pip install "
            f"timm=={newest}` here"
        )
    job = submit_watch_job(settings_or_fail(), dataset, patterns, address, f"timm=={newest}")
    out.print(
        f"timm {newest} is newer than the installed {installed}: this pass runs as Ray Job "
        f"{job} with it (`ray job logs {job}`)"
    )
    return True
