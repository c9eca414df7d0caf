"""Sweep benchmark: the cost of scheduling on Ray against evaluating in this process.

    python -m bench.sweep [--models 6] [--shards 8] [--images-per-shard 16]

Builds a dataset of synthetic JPEGs and evaluates the same random-weight timm test models twice,
each into a fresh SQLite database: once in this process (``saverzoo evaluate``'s engine), once
as a sweep on an embedded local Ray (one worker per CPU). Reports both wall times, Ray's start-up,
and per work unit the driver's round trip against the worker's own time (their difference is the
scheduling overhead: the Ray call, the bookkeeping, the search as models complete).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from cluster.ray_cluster import connected, secret_environment
from cluster.settings import Settings, get_settings
from db.queries import get_dataset
from db.session import session_factory
from orchestrator.cli import app
from orchestrator.ingest.evaluation import evaluate_dataset
from orchestrator.sweeps.store import SweepOptions, submit
from workers.spec import timm_spec
from workers.synthetic_images import natural_jpeg

ARCHS = (
    "test_resnet",
    "test_efficientnet",
    "test_vit",
    "test_convnext",
    "test_byobnet",
    "test_nfnet",
    "test_efficientnet_gn",
    "test_vit2",
)
console = Console()


def cli(database_url: str, *args: object) -> None:
    """A saverzoo command against ``database_url``, in this process."""
    os.environ["SAVERZOO_DATABASE_URL"] = database_url
    get_settings.cache_clear()
    app([str(a) for a in args], standalone_mode=False)


def make_dataset(root: Path, shards: int, per_shard: int, urls: dict[str, str]) -> None:
    """Synthetic JPEGs as shards, registered as ``bench`` in every database."""
    for i in range(shards * per_shard):
        folder = root / "src" / f"n{i % 10:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img_{i:05d}.JPEG").write_bytes(natural_jpeg(i, (320, 240)))
    first, *others = urls.values()
    cli(
        first,
        "datasets",
        "make-shards",
        root / "src",
        "--out",
        root / "shards",
        "--name",
        "bench",
        "--shard-size",
        per_shard,
    )
    with session_factory(first).begin() as session:
        pattern = get_dataset(session, "bench").shard_urls
    for url in others:
        cli(url, "datasets", "add", "bench", "--shards", pattern)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__)
    parser.add_argument("--models", type=int, default=6, choices=range(1, len(ARCHS) + 1))
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--images-per-shard", type=int, default=16)
    args = parser.parse_args(argv)
    archs = ARCHS[: args.models]
    with tempfile.TemporaryDirectory(prefix="saverzoo-sweep-bench-") as tmp:
        root = Path(tmp)
        console.print(f"{args.shards} shards of {args.images_per_shard} JPEGs, {len(archs)} models")
        urls = {name: f"sqlite:///{root / name}.db" for name in ("local", "sweep")}
        make_dataset(root, args.shards, args.images_per_shard, urls)

        specs = [timm_spec(arch, random_weights=True) for arch in archs]
        start = time.perf_counter()
        evaluate_dataset(session_factory(urls["local"]), "bench", specs)
        local = time.perf_counter() - start

        from orchestrator.sweeps.driver import SweepDriver

        settings = Settings(database_url=urls["sweep"])
        sessions = session_factory(urls["sweep"])
        with sessions.begin() as session:
            options = SweepOptions(random_weights=True, bundle_gmacs=0.0)  # a unit per model
            sweep_id = submit(session, "bench", list(archs), options).id
        start = time.perf_counter()
        with connected(None, secrets=secret_environment(settings)):
            ray_start = time.perf_counter() - start
            driver = SweepDriver(sessions, settings, sweep_id)
            loop_start = time.perf_counter()
            state = driver.run()
            loop = time.perf_counter() - loop_start
        total = time.perf_counter() - start
    times = driver.times
    overhead = [trip - work for trip, work in times.round_trips]
    console.print(f"in-process evaluation: {local:.1f} s")
    units = len(times.round_trips)
    console.print(
        f"sweep ({state}): {total:.1f} s in all = Ray start {ray_start:.1f} s + driver "
        f"{loop:.1f} s for {units} units on {len(times.ready_s)} workers (first worker ready "
        f"after {times.ready_s[0]:.1f} s; driver bookkeeping {times.bookkeeping_s:.1f} s, "
        f"{times.bookkeeping_s / units * 1000:.0f} ms per unit)"
    )
    console.print(
        f"per unit: worker {statistics.mean(w for _, w in times.round_trips):.3f} s, round "
        f"trip {statistics.mean(t for t, _ in times.round_trips):.3f} s, overhead median "
        f"{statistics.median(overhead) * 1000:.0f} ms (mean {statistics.mean(overhead) * 1000:.0f})"
    )


if __name__ == "__main__":
    main()
