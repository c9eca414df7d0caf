"""Migrations build exactly the schema the models describe, on both dialects."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from db.models import Base
from db.schema import current_revision, ensure_schema, head_revision
from db.session import engine_for


def test_migrations_match_the_models(database_url):
    ensure_schema(database_url)
    with engine_for(database_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert current_revision(database_url) == head_revision()


def test_the_head_read_from_the_migration_files_is_alembics_head(tmp_path):
    from alembic.script import ScriptDirectory

    from db.schema import alembic_config

    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert head_revision() == ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def test_a_database_alembic_never_migrated_has_no_revision(tmp_path):
    assert current_revision(f"sqlite:///{tmp_path / 'empty.db'}") is None
