"""Pairs and best savers per confidence signal ("max", the top-1 probability, or "margin", top-1
minus top-2); the signals each dataset keeps.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = {
    "pair_results": ["dataset_id", "base_id", "saver_id", "criterion", "max_drop_centipoints"],
    "best_savers": ["dataset_id", "base_id", "criterion", "max_drop_centipoints", "selection"],
}
# Names SQLite's unnamed unique constraints get when batch mode reflects them.
CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def _unique_name(table: str, columns: list[str]) -> str:
    """The unique constraint's name: PostgreSQL named it, SQLite's batch mode uses CONVENTION."""
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints(table):
        if constraint["column_names"] == columns and constraint["name"]:
            return constraint["name"]
    return f"uq_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    for table, columns in KEYS.items():
        name = _unique_name(table, columns)
        with op.batch_alter_table(table, naming_convention=CONVENTION) as batch:
            batch.add_column(
                sa.Column("confidence", sa.String(length=10), nullable=False, server_default="max")
            )
            batch.drop_constraint(name, type_="unique")
            batch.create_unique_constraint(f"uq_{table}_key", [*columns, "confidence"])
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(
            sa.Column("confidence_signals", sa.JSON(), nullable=False, server_default='["max"]')
        )


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("confidence_signals")
    for table in ("best_savers", "pair_results"):  # best savers point at pairs: first
        columns = KEYS[table]
        op.execute(sa.text(f"DELETE FROM {table} WHERE confidence <> 'max'"))
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_key", type_="unique")
            batch.create_unique_constraint(f"uq_{table}_{'_'.join(columns)}", columns)
            batch.drop_column("confidence")
