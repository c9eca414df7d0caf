"""How fast the command line starts: `saverzoo --help` and `saverzoo savers best --dataset D --json`
against the floor, `python -c "import sqlalchemy, typer, rich, numpy"`.

    python -m bench.cli_start [--runs 15] [--json OUT]

Each command runs as a new process (the console script's own Python) on a fresh SQLite database
holding one imported dataset of six models; the figures are medians of wall time, after one
warm-up run of each. Bytecode is cached as in an installed package (PYTHONDONTWRITEBYTECODE is
cleared for the measured commands: the floor's libraries are installed with their bytecode, so
recompiling saverzoo's own modules at every start would not compare like with like). The goal:
at most twice the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from search.synthetic import make_zoo, write_records

FLOOR = [sys.executable, "-c", "import sqlalchemy, typer, rich, numpy"]


def _median_seconds(command: list[str], env: dict, runs: int) -> float:
    subprocess.run(command, env=env, check=True, capture_output=True)  # warm-up: caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path, help="Write the figures here too.")
    args = parser.parse_args()
    saverzoo = [sys.executable, "-m", "orchestrator"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SAVERZOO_DATABASE_URL": f"sqlite:///{tmp}/saverzoo.db"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        records = write_records(make_zoo(6, 400, num_classes=10, seed=3), Path(tmp) / "records")
        subprocess.run(
            [*saverzoo, "records", "import", str(records), "--dataset", "val"],
            env=env,
            check=True,
            capture_output=True,
        )
        floor = _median_seconds(FLOOR, env, args.runs)
        timings = {
            "floor_s": floor,
            "help_s": _median_seconds([*saverzoo, "--help"], env, args.runs),
            "savers_best_json_s": _median_seconds(
                [*saverzoo, "savers", "best", "--dataset", "val", "--json"], env, args.runs
            ),
        }
    figures: dict[str, float | int | str] = {
        **timings,
        "help_vs_floor": timings["help_s"] / floor,
        "savers_best_vs_floor": timings["savers_best_json_s"] / floor,
        "runs": args.runs,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
    }
    for name, value in figures.items():
        print(f"{name:>22}: {value:.3f}" if isinstance(value, float) else f"{name:>22}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
