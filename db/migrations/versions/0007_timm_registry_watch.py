"""The timm registry as seen per version, weights identities, superseded models, sweep keys.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("timm_version", sa.String(length=40), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("num_entries", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("timm_version", "digest"),
    )
    op.create_table(
        "registry_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("data_config", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["snapshot_id"], ["registry_snapshots.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("snapshot_id", "name"),
    )
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("weights_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("key", sa.String(length=200), nullable=True))
        batch.create_unique_constraint("uq_sweeps_key", ["key"])


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_constraint("uq_sweeps_key", type_="unique")
        batch.drop_column("key")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("superseded_at")
        batch.drop_column("weights_id")
    op.drop_table("registry_entries")
    op.drop_table("registry_snapshots")
