"""Latency and throughput of ``GET /v1/savers/{base}`` (a benchmark, not a test).

``python -m bench.api --database-url postgresql+psycopg://...`` builds a synthetic zoo
(``search.synthetic``) through the real import path (every pair searched and stored) unless the
database already holds it, starts ``saverzoo serve`` in a process of its own and loads it from this
process over loopback: one client for the latency distribution, then several client processes for
throughput. Bases are drawn at random, so the dearest bases (999 candidate savers) count as often as
the cheapest.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx

TOKEN = "api-bench-token-0123456789"
DATASET = "api-bench"


def build_zoo(env: dict[str, str], models: int, samples: int) -> None:
    """Import the synthetic zoo unless the database has it (the search runs once, here)."""
    from search.synthetic import make_zoo, write_records

    listed = subprocess.run(
        [sys.executable, "-m", "orchestrator", "datasets", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if f'"name": "{DATASET}"' in listed:
        print(f"reusing the dataset {DATASET!r} already in the database")
        return
    with tempfile.TemporaryDirectory() as tmp:
        zoo = make_zoo(models, samples, seed=7)
        records = write_records(zoo, Path(tmp) / "records")
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "records",
                "import",
                str(records),
                "--dataset",
                DATASET,
            ],
            env=env,
            check=True,
        )
    print(
        f"built a {models}-model zoo on {samples:,} samples in {time.perf_counter() - start:.0f} s"
    )


def bases(url: str) -> list[str]:
    page = httpx.get(
        f"{url}/v1/models", params={"dataset": DATASET, "limit": 1000}, headers=_auth(), timeout=60
    ).json()
    return [m["name"] for m in page["items"]]


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def latencies(url: str, names: list[str], requests: int, seed: int) -> list[float]:
    """Seconds per request of one keep-alive client asking for random bases."""
    rng = random.Random(seed)
    seconds = []
    with httpx.Client(base_url=url, headers=_auth(), timeout=30) as client:
        for _ in range(requests):
            base = rng.choice(names)
            start = time.perf_counter()
            response = client.get(f"/v1/savers/{base}", params={"dataset": DATASET})
            seconds.append(time.perf_counter() - start)
            response.raise_for_status()
    return seconds


def _client(args: tuple[str, list[str], float, int]) -> int:
    url, names, duration, seed = args
    rng, done = random.Random(seed), 0
    with httpx.Client(base_url=url, headers=_auth(), timeout=30) as client:
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            client.get(f"/v1/savers/{rng.choice(names)}", params={"dataset": DATASET})
            done += 1
    return done


def throughput(url: str, names: list[str], clients: int, duration: float) -> float:
    with ProcessPoolExecutor(clients) as pool:
        counts = pool.map(_client, [(url, names, duration, seed) for seed in range(clients)])
        return sum(counts) / duration


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 4, 8])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--server-workers", type=int, default=1, help="serve --workers")
    args = parser.parse_args()
    env = {
        **os.environ,
        "SAVERZOO_DATABASE_URL": args.database_url,
        "SAVERZOO_API_READ_TOKENS": TOKEN,
    }
    build_zoo(env, args.models, args.samples)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "serve",
            "--port",
            str(args.port),
            "--log-level",
            "warning",
            "--workers",
            str(args.server_workers),
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(600):
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        names = bases(url)
        latencies(url, names, 100, seed=0)  # warm the connection pool and the page cache
        seconds = latencies(url, names, args.requests, seed=1)
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
            f"{len(names)} bases, {args.requests} sequential requests, "
            f"{args.server_workers} server process(es)"
        )
        print(
            f"GET /v1/savers/{{base}} latency: p50 {1e3 * statistics.median(seconds):.2f} ms, "
            f"p90 {1e3 * percentile(seconds, 0.9):.2f} ms, "
            f"p99 {1e3 * percentile(seconds, 0.99):.2f} ms, "
            f"max {1e3 * max(seconds):.2f} ms"
        )
        for clients in args.clients:
            rate = throughput(url, names, clients, args.seconds)
            print(f"throughput with {clients} client processes: {rate:,.0f} requests/s")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
