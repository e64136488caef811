"""work queue: attempts, retry time, lease holder; a patient's refusal of the AI read (no_ai)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("ai_attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("processing_by", sa.String(64)))
        batch.add_column(sa.Column("no_ai", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.create_index("ix_studies_queue", ["status", "next_attempt_at"])


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_index("ix_studies_queue")
        for column in ("no_ai", "processing_by", "next_attempt_at", "ai_attempts"):
            batch.drop_column(column)
