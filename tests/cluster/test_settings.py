"""One settings object: environment beats the TOML file, which beats the defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cluster.settings import Settings, data_dir
from tests.factories import saverzoo


def test_default_database_is_sqlite_in_the_user_data_directory(monkeypatch):
    monkeypatch.delenv("SAVERZOO_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.database_url == f"sqlite:///{data_dir() / 'saverzoo.db'}"
    assert settings.search_budgets == [0.0, 0.1, 0.5, 1.0, 2.0]


def test_toml_file_is_read_and_the_environment_wins(monkeypatch, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('database_url = "sqlite:////from/toml.db"\nsearch_budgets = [0, 1]\n')
    monkeypatch.setenv("SAVERZOO_CONFIG", str(config))
    monkeypatch.delenv("SAVERZOO_DATABASE_URL", raising=False)
    assert Settings().database_url == "sqlite:////from/toml.db"
    assert Settings().search_budgets == [0.0, 1.0]

    monkeypatch.setenv("SAVERZOO_DATABASE_URL", "sqlite:////from/env.db")
    assert Settings().database_url == "sqlite:////from/env.db"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SAVERZOO_DATABASE_URL", "not a url", "is not a database URL"),
        ("SAVERZOO_DATABASE_URL", "mysql://x/y", "scheme 'mysql' is not supported"),
        ("SAVERZOO_DATABASE_URL", "foo://x", "scheme 'foo' is not supported"),
        ("SAVERZOO_DATABASE_URL", "postgresql://u@h/d", "scheme .postgresql. is not supported"),
        ("SAVERZOO_DATABASE_URL", "sqlite+aiosqlite:///x.db", "scheme 'sqlite.aiosqlite' is not"),
        ("SAVERZOO_SEARCH_BUDGETS", "[-1]", "from 0 to 100"),
        ("SAVERZOO_SEARCH_BUDGETS", "[0.125]", "two decimals"),
        ("SAVERZOO_HOLDOUT_FRACTION", "1.5", "strictly between 0 and 1"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "sqlite://", "sqlite+pysqlite:///x.db", "postgresql+psycopg://h/d"]
)
def test_the_supported_database_schemes_are_accepted(monkeypatch, url):
    monkeypatch.setenv("SAVERZOO_DATABASE_URL", url)
    assert Settings().database_url == url


@pytest.mark.parametrize("url", ["mysql://x/y", "foo://x", "mssql+pyodbc://u:pw@h/d"])
def test_an_unsupported_database_scheme_fails_in_one_line_naming_the_supported_ones(
    monkeypatch, url
):
    monkeypatch.setenv("SAVERZOO_DATABASE_URL", url)
    from cluster.settings import get_settings

    get_settings.cache_clear()
    try:
        result = saverzoo("datasets", "list")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not supported; use sqlite or postgresql+psycopg" in lines[0]
    assert "pw" not in result.stderr


def test_passwords_are_never_shown(monkeypatch):
    monkeypatch.setenv("SAVERZOO_DATABASE_URL", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x")
    from cluster.settings import get_settings

    get_settings.cache_clear()
    try:
        assert "hunter2" not in Settings().database_display
        result = saverzoo("db", "info")  # the server does not exist: the error names it
        assert result.exit_code != 0
        assert "hunter2" not in result.output
        assert "127.0.0.1:1/x" in result.stderr
    finally:
        get_settings.cache_clear()
