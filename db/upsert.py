"""Idempotent bulk writes: insert rows, or update the row that has the same key.

SQLite and small PostgreSQL batches use one ``INSERT ... ON CONFLICT DO UPDATE`` statement run
with many parameter sets (compiled once; psycopg pipelines them). Large PostgreSQL batches are
COPYed into a temporary staging table and merged with one ``INSERT ... SELECT ... ON CONFLICT``:
the way PostgreSQL takes thousands of rows fastest.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence

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
    only once per statement).
    """
    if not rows:
        return
    rows = list({tuple(row[k] for k in key): row for row in rows}.values())
    dialect = session.get_bind().dialect.name
    if dialect not in _INSERT_MODULE_BY_DIALECT:
        raise NotImplementedError(
            f"saverzoo supports SQLite and PostgreSQL databases, not {dialect}"
        )
    if dialect == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        _copy_merge(session, table.__table__.name, rows, key)
        return
    insert = importlib.import_module(_INSERT_MODULE_BY_DIALECT[dialect]).insert
    columns = [c for c in rows[0] if c not in key]
    statement = insert(table)
    if columns:
        statement = statement.on_conflict_do_update(
            index_elements=list(key), set_={c: statement.excluded[c] for c in columns}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(key))
    session.connection().execute(statement, rows)


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
    driver_connection = connection.connection.driver_connection  # psycopg's, for COPY
    assert driver_connection is not None  # None only once the connection is closed
    with driver_connection.cursor() as cursor:
        with cursor.copy(f'COPY "{staging}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in key)
    conflict = ", ".join(f'"{c}"' for c in key)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    connection.exec_driver_sql(
        f'INSERT INTO "{table}" ({names}) SELECT {names} FROM "{staging}" '
        f"ON CONFLICT ({conflict}) {action}"
    )
