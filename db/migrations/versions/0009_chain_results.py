"""Each base's best three-model cascade per budget and candidate count.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chain_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("base_id", sa.Integer(), nullable=False),
        sa.Column("max_drop_centipoints", sa.Integer(), nullable=False),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("chains", sa.JSON(), nullable=False),
        sa.Column("s1_id", sa.Integer(), nullable=True),
        sa.Column("s2_id", sa.Integer(), nullable=True),
        sa.Column("threshold1", sa.Float(), nullable=True),
        sa.Column("threshold2", sa.Float(), nullable=True),
        sa.Column("exit1", sa.Float(), nullable=True),
        sa.Column("exit2", sa.Float(), nullable=True),
        sa.Column("correct", sa.Integer(), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("saving", sa.Float(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["base_id"], ["models.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["s1_id"], ["models.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["s2_id"], ["models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "base_id", "max_drop_centipoints", "candidates"),
    )


def downgrade() -> None:
    op.drop_table("chain_results")
