"""`pip install saverzoo` without extras is enough for the search, the database and the queries.

Run by `make base-install` with the Python of a virtual environment that has the base install only
(no torch, timm or Ray): records are imported, every query command answers, and a command that
evaluates models says in one line which extra it needs. Plain Python, no pytest: the base install
has no test tools either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from search.synthetic import make_zoo, write_records

QUERIES = [
    ["--help"],
    ["db", "info"],
    ["datasets", "list", "--json"],
    ["datasets", "show", "val", "--json"],
    ["models", "list", "--json"],
    ["models", "show", "zoo000", "--json"],
    ["savers", "best", "--dataset", "val", "--json"],
    ["savers", "best", "--dataset", "val", "--max-drop", "0.5", "--holdout", "--json"],
    ["savers", "show", "zoo005", "--dataset", "val", "--json"],
    ["savers", "curve", "zoo005", "zoo000", "--dataset", "val", "--json"],
    ["sweep", "list", "--json"],
    ["serve", "--help"],
]
NEEDS_WORKER = [
    ["models", "add", "mine", "--arch", "resnet18", "--checkpoint", "nothing.pth"],
    ["evaluate", "--models", "resnet18", "--dataset", "val", "--random-weights"],
]


def main(saverzoo: str) -> int:
    for module in ("torch", "timm", "ray"):
        found = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
        if found.returncode == 0:
            print(f"{module} is installed: this check needs a base install without extras")
            return 1
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SAVERZOO_DATABASE_URL": f"sqlite:///{tmp}/saverzoo.db"}

        def run(args: list[str]) -> subprocess.CompletedProcess:
            return subprocess.run(
                [saverzoo, *args], cwd=tmp, env=env, capture_output=True, text=True
            )

        records = write_records(make_zoo(6, 200, num_classes=10, seed=3), Path(tmp) / "records")
        steps = [(["records", "import", str(records), "--dataset", "val"], 0)]
        steps += [(query, 0) for query in QUERIES] + [(command, 1) for command in NEEDS_WORKER]
        for args, expected in steps:
            result = run(args)
            if result.returncode != expected:
                print(
                    f"saverzoo {' '.join(args)}: exit {result.returncode}, not {expected}\n"
                    f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
                )
                return 1
            if "--json" in args:
                json.loads(result.stdout)
            if expected == 1:
                lines = result.stderr.strip().splitlines()
                if len(lines) != 1 or "pip install 'saverzoo[worker]'" not in lines[0]:
                    print(f"saverzoo {' '.join(args)} should name the worker extra: {lines}")
                    return 1
            print(f"ok: saverzoo {' '.join(args)}")
    print(f"the base install answers {len(QUERIES)} queries; worker commands name the extra")
    return 0


if __name__ == "__main__":
    # Absolute: the commands run in a temporary directory, where a relative path finds nothing.
    sys.exit(main(str(Path(sys.argv[1]).absolute())))
