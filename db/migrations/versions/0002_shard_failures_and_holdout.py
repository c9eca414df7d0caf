"""Failed samples per dataset shard; the held-out fraction kept per dataset; chunks by dataset.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_shards") as batch_op:
        batch_op.add_column(
            sa.Column("failed_samples", sa.JSON(), nullable=False, server_default="{}")
        )
    with op.batch_alter_table("datasets") as batch_op:
        batch_op.add_column(
            sa.Column("holdout_fraction", sa.Float(), nullable=False, server_default="0.5")
        )
    op.create_index("ix_prediction_chunks_dataset", "prediction_chunks", ["dataset_id", "model_id"])


def downgrade() -> None:
    op.drop_index("ix_prediction_chunks_dataset", table_name="prediction_chunks")
    with op.batch_alter_table("datasets") as batch_op:
        batch_op.drop_column("holdout_fraction")
    with op.batch_alter_table("dataset_shards") as batch_op:
        batch_op.drop_column("failed_samples")
