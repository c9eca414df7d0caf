"""A password never reaches what saverzoo prints, whatever form the database URL takes."""

from __future__ import annotations

import pytest

from cluster.redact import database_display, error_line, redacted

SECRET = "s3cr3t-Pw"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://alice:{SECRET}@db.example:5432/zoo",
        f"postgresql+psycopg://alice@db.example/zoo?password={SECRET}",
        f"postgresql+psycopg://alice@db.example/zoo?sslmode=require&PASSWORD={SECRET}",
        f"postgresql+psycopg://alice@db.example/zoo?sslpassword={SECRET}&password={SECRET}",
        f"postgresql+psycopg:///zoo?host=/run/pg&password={SECRET}",
        f"host=db.example user=alice password={SECRET} dbname=zoo",  # a libpq keyword string
        f"host=db.example password = '{SECRET} with spaces' dbname=zoo",
        f"postgresql+psycopg://alice:{SECRET}@with-an-at@db.example/zoo",  # '@' left unescaped
        f"host=db.example password={SECRET};more dbname=zoo",
    ],
)
def test_every_form_of_a_database_url_prints_without_its_password(url):
    shown = database_display(url)
    assert SECRET not in shown and "***" in shown


def test_what_is_not_secret_is_kept():
    shown = database_display("postgresql+psycopg://alice:pw@db.example:5432/zoo?sslmode=require")
    assert shown == "postgresql+psycopg://alice:***@db.example:5432/zoo?sslmode=require"
    assert database_display("sqlite:////data/saverzoo.db") == "sqlite:////data/saverzoo.db"


def test_a_driver_error_is_one_line_without_the_password():
    class DriverError(Exception):
        pass

    class Wrapped(Exception):
        orig = DriverError(
            f'connection failed: host=db password={SECRET} port=5432\n"(Background on this '
            "error at: https://sqlalche.me/e/20/e3q8)"
        )

    line = error_line(Wrapped("sqlalchemy's long text"))
    assert line == "connection failed: host=db password=*** port=5432"
    assert redacted(f"mysql://u:{SECRET}@h/d") == "mysql://u:***@h/d"
