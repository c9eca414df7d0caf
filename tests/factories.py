"""Small builders shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from db.models import Base
from db.session import engine_for
from orchestrator.cli import app
from search.engine import Zoo
from search.synthetic import SyntheticZoo, make_zoo, write_records


def small_zoo(num_models: int = 6, num_samples: int = 400, seed: int = 3) -> SyntheticZoo:
    return make_zoo(num_models, num_samples, num_classes=10, seed=seed, decimals=2)


def engine_zoo(zoo: SyntheticZoo) -> Zoo:
    return Zoo.from_predictions(zoo.names, zoo.gmacs, zoo.predictions, zoo.confidence, zoo.labels)


def records_dir(tmp_path: Path, zoo: SyntheticZoo, names: list[str] | None = None) -> Path:
    return write_records(zoo, tmp_path / "records", names)


def saverzoo(*args: str):
    """Run the CLI in-process; returns the click Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def saverzoo_json(*args: str):
    result = saverzoo(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def row_counts(url: str) -> dict[str, int]:
    with engine_for(url).connect() as connection:
        return {
            table.name: connection.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }
