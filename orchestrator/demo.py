"""The example demo: a generated zoo of records, imported and searched on an embedded database.

It shows the search path end to end (import, incremental pairs, best savers, held-out estimate,
a curve plot). Everything lives under the work directory, including the SQLite database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from search.synthetic import make_zoo, write_records

DEMO_DATASET = "synthetic-val"


def run_demo(workdir: Path, console: Console) -> None:
    workdir = workdir.resolve()
    records = workdir / "records"
    if records.exists():
        shutil.rmtree(records)
    zoo = make_zoo(num_models=12, num_samples=10_000, seed=7)
    write_records(zoo, records)
    env = {
        **os.environ,
        "SAVERZOO_DATABASE_URL": f"sqlite:///{workdir / 'saverzoo.db'}",
        "COLUMNS": os.environ.get("COLUMNS", "120"),  # room for the wide held-out table
    }
    (workdir / "saverzoo.db").unlink(missing_ok=True)

    def run(*args: str, capture: bool = False) -> str:
        command = [sys.executable, "-m", "orchestrator", *args]
        console.print(f"[bold cyan]$ saverzoo {' '.join(args)}[/]")
        done = subprocess.run(command, env=env, check=True, text=True, capture_output=capture)
        return done.stdout

    console.print(
        f"[bold]saverzoo demo[/]: a generated zoo of {len(zoo.names)} models on "
        f"{len(zoo.labels):,} samples, database {workdir / 'saverzoo.db'}"
    )
    run("records", "import", str(records), "--dataset", DEMO_DATASET)
    run("models", "list", "--dataset", DEMO_DATASET)
    run("savers", "best", "--dataset", DEMO_DATASET)
    run("savers", "best", "--dataset", DEMO_DATASET, "--criterion", "paper")
    run("savers", "best", "--dataset", DEMO_DATASET, "--max-drop", "0.5", "--holdout")
    best = json.loads(run("savers", "best", "--dataset", DEMO_DATASET, "--json", capture=True))
    pair = next((row for row in reversed(best) if row["saver"]), None)
    if pair is not None:
        run(
            "savers",
            "curve",
            pair["base"],
            pair["saver"],
            "--dataset",
            DEMO_DATASET,
            "--plot",
            str(workdir / "curve.png"),
        )
    console.print(
        "\nThe zoo is generated (a stand-in until real models are evaluated): dearer models are "
        "more accurate and confidence tracks correctness.\nQuery it yourself:\n"
        f"  export SAVERZOO_DATABASE_URL=sqlite:///{workdir / 'saverzoo.db'}\n"
        f"  saverzoo savers best --dataset {DEMO_DATASET} --max-drop 1 --json\n"
        f"  saverzoo savers curve BASE SAVER --dataset {DEMO_DATASET} --plot curve.png"
    )
