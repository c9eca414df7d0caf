"""An index that ranks one base's candidate savers without reading the pair rows.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RANKING_COLUMNS = [
    "saver_id",
    "saving",
    "accuracy",
    "holdout_calibration_saving",
    "holdout_calibration_accuracy",
]


def upgrade() -> None:
    op.create_index(
        "ix_pair_results_ranking",
        "pair_results",
        ["dataset_id", "base_id", "criterion", "max_drop_centipoints"],
        postgresql_include=RANKING_COLUMNS,
    )


def downgrade() -> None:
    op.drop_index("ix_pair_results_ranking", table_name="pair_results")
