"""Small builders shared by the tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from typer.testing import CliRunner

from db.models import Base
from db.session import engine_for
from orchestrator.cli import app
from search.engine import Zoo
from search.synthetic import SyntheticZoo, make_zoo, write_records

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


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


def stored_zoo(url: str, dataset_name: str) -> tuple[Zoo, dict[str, float]]:
    """The dataset's complete models as an engine zoo, and each one's top-1 accuracy."""
    import numpy as np

    from db.models import Model
    from db.queries import complete_model_ids, dataset_samples, get_dataset, top1_predictions
    from db.session import session_factory

    with session_factory(url).begin() as session:
        dataset = get_dataset(session, dataset_name)
        ids = complete_model_ids(session, dataset)
        models = session.scalars(select(Model).where(Model.id.in_(ids))).all()
        classes, probs = top1_predictions(session, dataset, [m.id for m in models])
        labels = dataset_samples(session, dataset).labels
    names = [m.name for m in models]
    zoo = Zoo.from_predictions(names, [m.gmacs for m in models], classes, probs, labels)
    accuracy = {name: float(np.mean(classes[i] == labels)) for i, name in enumerate(names)}
    return zoo, accuracy


def brute_force_best_saving(zoo: Zoo, base: int) -> float:
    """The largest saving of any cheaper saver at any threshold that loses no accuracy."""
    from search.engine import pair_curve

    best = 0.0
    for saver in range(len(zoo.names)):
        if zoo.costs[saver] < zoo.costs[base]:
            for point in pair_curve(zoo, base, saver):
                if point.correct >= point.base_correct:
                    best = max(best, point.saving)
    return best


def row_counts(url: str) -> dict[str, int]:
    with engine_for(url).connect() as connection:
        return {
            table.name: connection.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }


# ----- images ---------------------------------------------------------------------------------
IMAGE_MODES = ("RGB", "L", "CMYK")  # ImageNet has grayscale and CMYK JPEGs too


def jpeg_bytes(seed: int, size: tuple[int, int], mode: str) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def image_folder(root: Path, classes: int = 3, per_class: int = 5) -> dict[str, tuple[bytes, int]]:
    """An ImageFolder of real JPEGs (several sizes and modes); returns name -> (bytes, label)."""
    made = {}
    for label in range(classes):
        folder = root / f"n{label:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            seed = label * 100 + i
            mode = IMAGE_MODES[seed % len(IMAGE_MODES)]
            data = jpeg_bytes(seed, (16 + 7 * i, 12 + 5 * label), mode)
            name = f"n{label:08d}_{i:04d}.JPEG"
            (folder / name).write_bytes(data)
            made[f"n{label:08d}/{name}"] = (data, label)
    return made


def flat_imagenet(root: Path, count: int = 7) -> tuple[dict[str, tuple[bytes, int]], Path]:
    """A flat folder of ILSVRC2012_val_*.JPEG and a labels file, in file-name order."""
    root.mkdir(parents=True)
    made, labels = {}, []
    for i in range(count):
        data = jpeg_bytes(1000 + i, (20, 20 + i), IMAGE_MODES[i % 3])
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        (root / name).write_bytes(data)
        made[name] = (data, i % 4)
        labels.append(str(i % 4))
    labels_file = root.parent / "labels.txt"
    labels_file.write_text("\n".join(labels) + "\n")
    return made, labels_file


# ----- the HTTP API ---------------------------------------------------------------------------
READ_TOKEN = "read-token-for-tests-0001"
WRITE_TOKEN = "write-token-for-tests-0001"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_client(url: str, report_dir: Path | None = None, **settings: object) -> TestClient:
    """The app over ``url`` in this process (no server): for what the process boundary is not."""
    from fastapi.testclient import TestClient

    from cluster.settings import Settings
    from orchestrator.http.api import create_app

    app = create_app(
        Settings(
            database_url=url, api_read_tokens=[READ_TOKEN], api_write_tokens=[WRITE_TOKEN]
        ).model_copy(update=settings),
        report_dir,
    )
    return TestClient(app, headers=auth(READ_TOKEN), raise_server_exceptions=True)


@contextmanager
def api_server(log: Path, report_dir: Path | None = None, **env: str) -> Iterator[str]:
    """``saverzoo serve`` in a process of its own on a free loopback port; yields its URL.

    The environment is this process's (the test database) plus ``env``; the server's output goes
    to ``log``.
    """
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "orchestrator", "serve", "--port", str(port)]
    if report_dir is not None:
        command += ["--report-dir", str(report_dir)]
    with open(log, "wb") as sink:
        server = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"saverzoo serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"saverzoo serve did not answer: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def database_checksum(url: str) -> str:
    """A digest of every row of every table: equal digests, an unchanged database."""
    import hashlib

    from sqlalchemy import select

    from db.models import Base
    from db.session import engine_for

    digest = hashlib.sha256()
    with engine_for(url).connect() as connection:
        for table in Base.metadata.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            for row in connection.execute(select(table).order_by(*order)):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()
