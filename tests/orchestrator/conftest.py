"""Fixtures of the orchestrator tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import timm
import torch
from safetensors.torch import save_file
from sqlalchemy import create_engine, make_url, text

from tests.factories import image_folder, saverzoo
from tests.orchestrator.sweeping import ARCHS


@pytest.fixture
def sweep_dataset(use_database, tmp_path):
    """4 shards of real JPEGs, and six seeded checkpoints (weights equal in every process)."""
    image_folder(tmp_path / "src", classes=3, per_class=8)
    made = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        tmp_path / "shards",
        "--name",
        "tiny",
        "--shard-size",
        "6",
    )
    assert made.exit_code == 0, made.output
    for seed, arch in enumerate(ARCHS):
        torch.manual_seed(seed)
        path = tmp_path / f"{arch}.safetensors"
        save_file(timm.create_model(arch, pretrained=False).state_dict(), str(path))
        added = saverzoo("models", "add", f"seeded-{arch}", "--arch", arch, "--checkpoint", path)
        assert added.exit_code == 0, added.output
    return tmp_path


@pytest.fixture
def secret_settings(use_database, monkeypatch) -> list[str]:
    """The database URL with a password and the object store's keys in this environment (the
    launcher's, which Ray's processes inherit); returns the secrets, to search for."""
    from sqlalchemy import make_url

    from cluster.settings import get_settings

    url = make_url(use_database)
    password = url.password or "pw-never-in-ray-7f3a"  # the test server trusts loopback
    monkeypatch.setenv("SAVERZOO_DATABASE_URL", url.set(password=password).render_as_string(False))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-NEVER-IN-RAY-91c2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-never-in-ray-4d8e")
    get_settings.cache_clear()
    return [password, "AKIA-NEVER-IN-RAY-91c2", "secret-never-in-ray-4d8e"]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def module_database(request, tmp_path_factory) -> Iterator[str]:
    """An empty database for the whole module (SQLite, or a PostgreSQL database dropped
    afterwards), and the settings pointed at it meanwhile."""
    from cluster.settings import get_settings

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'saverzoo.db'}"
        admin, name = None, None
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"saverzoo_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAVERZOO_DATABASE_URL", url)
        get_settings.cache_clear()
        yield url
    get_settings.cache_clear()
    if admin is not None:
        from db.session import engine_for

        engine_for(url).dispose()
        engine_for.cache_clear()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
