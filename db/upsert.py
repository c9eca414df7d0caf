"""Idempotent bulk writes: insert rows, or update the row that has the same key.

SQLite runs one ``INSERT ... ON CONFLICT DO UPDATE`` statement over tuples of values, bound as
SQLAlchemy binds them (its type processors, applied a column at a time) but without its per-row
parameter handling, which cost more than SQLite's own work. Small PostgreSQL batches run the same
statement through SQLAlchemy (psycopg pipelines them). Large PostgreSQL batches are COPYed into a
temporary staging table and merged with one ``INSERT ... SELECT ... ON CONFLICT``: the way
PostgreSQL takes thousands of rows fastest.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import is_, itemgetter
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.orm import Session

# ON CONFLICT upserts are dialect-specific statements of the same shape, from the dialect's module
# (imported on first use: an SQLite command never loads the PostgreSQL dialect).
_INSERT_MODULE_BY_DIALECT = {
    "sqlite": "sqlalchemy.dialects.sqlite",
    "postgresql": "sqlalchemy.dialects.postgresql",
}
COPY_MIN_ROWS = 200


def upsert(
    session: Session,
    table,  # a mapped class
    rows: Sequence[Mapping],
    key: Sequence[str],
) -> None:
    """Insert ``rows``, or update the stored row with the same ``key`` columns.

    Rows repeating a key within one call collapse to the last one (ON CONFLICT may touch a row
    only once per statement). Every row has the columns of the first.
    """
    if not rows:
        return
    key_of = itemgetter(*key)
    rows = list(dict(zip(map(key_of, rows), rows, strict=True)).values())
    dialect = session.get_bind().dialect.name
    if dialect not in _INSERT_MODULE_BY_DIALECT:
        raise NotImplementedError(
            f"saverzoo supports SQLite and PostgreSQL databases, not {dialect}"
        )
    columns = list(rows[0])
    if dialect == "sqlite" and _plainly_bound(table.__table__, columns):
        _sqlite_upsert(session.connection(), table.__table__, columns, rows, key)
        return
    if dialect == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        _copy_merge(session, table.__table__.name, rows, key)
        return
    insert = importlib.import_module(_INSERT_MODULE_BY_DIALECT[dialect]).insert
    updated = [c for c in columns if c not in key]
    statement = insert(table)
    if updated:
        statement = statement.on_conflict_do_update(
            index_elements=list(key), set_={c: statement.excluded[c] for c in updated}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(key))
    session.connection().execute(statement, rows)


def _plainly_bound(table: Table, columns: list[str]) -> bool:
    """Whether SQLAlchemy would bind exactly the given values, each through its type's bind
    processor: no column left out that it fills with a Python-side default, and no type that
    wraps its parameter in SQL."""
    given = set(columns)
    return all(
        (c.default is None or c.key in given) and not c.type._has_bind_expression
        for c in table.columns
    )


def _conflict_clause(columns: Sequence[str], key: Sequence[str]) -> str:
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in key)
    conflict = ", ".join(f'"{c}"' for c in key)
    return f"ON CONFLICT ({conflict}) " + (f"DO UPDATE SET {updates}" if updates else "DO NOTHING")


def _sqlite_upsert(
    connection: Connection,
    table: Table,
    columns: list[str],
    rows: list[Mapping],
    key: Sequence[str],
) -> None:
    """One statement over many tuples, each value bound as SQLAlchemy binds it."""
    dialect = connection.dialect
    values_by_column: list[Sequence[Any]]
    if len(columns) == 1:  # itemgetter of one name gives the value, not a 1-tuple
        values_by_column = [[row[columns[0]] for row in rows]]
    else:
        values_by_column = list(zip(*map(itemgetter(*columns), rows), strict=True))
    for index, name in enumerate(columns):
        process = table.columns[name].type._cached_bind_processor(dialect)
        if process is None:
            continue
        values = values_by_column[index]
        first = values[0]
        # A value every row shares (the batch's timestamp, the same object) is converted once.
        if all(map(is_, values, repeat(first))):
            values_by_column[index] = [process(first)] * len(values)
        else:
            values_by_column[index] = list(map(process, values))
    names = [table.columns[c].name for c in columns]
    key_names = [table.columns[c].name for c in key]
    quoted = ", ".join(f'"{name}"' for name in names)
    marks = ", ".join("?" for _ in columns)
    connection.exec_driver_sql(
        f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks}) '
        + _conflict_clause(names, key_names),
        list(zip(*values_by_column, strict=True)),
    )


def _copy_merge(session: Session, table: str, rows: list[Mapping], key: Sequence[str]) -> None:
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    staging = f"staging_{table}"
    connection = session.connection()
    # Only the columns written; dropped with the transaction, emptied before each use.
    connection.exec_driver_sql(
        f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" ON COMMIT DROP AS '
        f'SELECT {names} FROM "{table}" WITH NO DATA'
    )
    connection.exec_driver_sql(f'TRUNCATE "{staging}"')
    type_oids: list[int] = [
        column[1]  # type: ignore[misc]  # a DBAPI description's type code: the column's type OID
        for column in connection.exec_driver_sql(
            f'SELECT {names} FROM "{staging}" LIMIT 0'
        ).cursor.description
    ]
    values = list(map(itemgetter(*columns), rows)) if len(columns) > 1 else []
    binary = bool(values) and _binary_copyable(type_oids, values)
    driver_connection = connection.connection.driver_connection  # psycopg's, for COPY
    assert driver_connection is not None  # None only once the connection is closed
    with driver_connection.cursor() as cursor:
        if binary:
            # The server reads binary values without parsing text, and psycopg writes them
            # without formatting floats: a third of the text COPY's cost.
            with cursor.copy(f'COPY "{staging}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
                copy.set_types(type_oids)
                for row_values in values:
                    copy.write_row(row_values)
        else:
            with cursor.copy(f'COPY "{staging}" ({names}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
    connection.exec_driver_sql(
        f'INSERT INTO "{table}" ({names}) SELECT {names} FROM "{staging}" '
        f"{_conflict_clause(columns, key)}"
    )


# PostgreSQL types whose binary COPY form psycopg writes from the Python values a text COPY
# takes: integers, floats, strings, booleans, bytes, and timestamps with a time zone.
_INT2, _INT4, _INT8, _FLOAT4, _FLOAT8, _TEXT, _VARCHAR, _BOOL, _BYTEA = (
    21,
    23,
    20,
    700,
    701,
    25,
    1043,
    16,
    17,
)
_TIMESTAMPTZ = 1184
_BINARY_COPY_TYPES = {_INT2, _INT4, _INT8, _FLOAT4, _FLOAT8, _TEXT, _VARCHAR, _BOOL, _BYTEA}


def _binary_copyable(type_oids: list[int], values: list[tuple]) -> bool:
    """Whether a binary COPY stores what a text COPY would. A naive datetime is not: in text the
    server reads it in its own time zone, in binary psycopg refuses it."""
    for index, oid in enumerate(type_oids):
        if oid == _TIMESTAMPTZ:
            stamps = {row[index] for row in values}
            if any(stamp is not None and stamp.tzinfo is None for stamp in stamps):
                return False
        elif oid not in _BINARY_COPY_TYPES:
            return False
    return True
