"""Query commands start at once: they import none of torch, timm, Ray, webdataset, matplotlib or
numba. Checked by the modules a real command leaves loaded in a process of its own (which
modules, never how long)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.factories import records_dir, saverzoo, small_zoo

HEAVY = ("torch", "timm", "ray", "webdataset", "matplotlib", "numba")
# Runs the command as the console script does and prints the heavy modules it loaded.
PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(
    m for m in {heavy!r} if m in sys.modules)), file=sys.stderr))
sys.argv = ["saverzoo", *{args!r}]
from orchestrator.cli import app
app()
"""
QUERIES = [
    ["--help"],
    ["savers", "best", "--dataset", "val", "--json"],
    ["savers", "best", "--dataset", "val", "--max-drop", "0.5", "--holdout"],
    ["savers", "show", "zoo005", "--dataset", "val"],
    ["savers", "curve", "zoo005", "zoo000", "--dataset", "val", "--json"],
    ["models", "list"],
    ["models", "show", "zoo000", "--json"],
    ["datasets", "list"],
    ["datasets", "show", "val"],
    ["sweep", "list"],
    ["sweep", "status"],
    ["db", "info"],
    ["serve", "--help"],
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> str:
    from cluster.settings import get_settings

    root = tmp_path_factory.mktemp("start")
    url = f"sqlite:///{root / 'saverzoo.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAVERZOO_DATABASE_URL", url)
        get_settings.cache_clear()
        assert (
            saverzoo(
                "records", "import", records_dir(root, small_zoo()), "--dataset", "val"
            ).exit_code
            == 0
        )
    get_settings.cache_clear()
    return url


@pytest.mark.parametrize("args", QUERIES, ids=" ".join)
def test_a_query_command_imports_no_heavy_module(stored, args, monkeypatch):
    monkeypatch.setenv("SAVERZOO_DATABASE_URL", stored)
    probe = PROBE.format(heavy=HEAVY, args=args)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    expected = 1 if args == ["sweep", "status"] else 0  # no sweep yet: one line, exit 1
    assert result.returncode == expected, result.stderr
    loaded = json.loads(result.stderr.strip().splitlines()[-1])
    assert loaded == [], f"saverzoo {' '.join(args)} imported {loaded}"


# What the help and a JSON answer do not need: the database layer for the help, and rich's
# console (and the command modules of other subjects) for an answer printed as JSON.
NOT_LOADED_BY = {
    ("--help",): ("sqlalchemy", "pydantic_settings", "db.models", "orchestrator.answers"),
    ("savers", "best", "--dataset", "val", "--json"): (
        "rich.console",
        "sqlalchemy.dialects.postgresql",
        "orchestrator.cli.sweep",
        "orchestrator.cli.datasets",
    ),
}


@pytest.mark.parametrize("args", list(NOT_LOADED_BY), ids=" ".join)
def test_a_command_loads_only_what_it_answers_with(stored, args, monkeypatch):
    monkeypatch.setenv("SAVERZOO_DATABASE_URL", stored)
    probe = PROBE.format(heavy=NOT_LOADED_BY[args], args=list(args))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stderr.strip().splitlines()[-1])
    assert loaded == [], f"saverzoo {' '.join(args)} imported {loaded}"
