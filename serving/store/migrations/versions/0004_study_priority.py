"""study priority: the read priority a study arrived with (e.g. a C-STORE request's Priority), kept
with the study instead of in one process's memory

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("priority", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("priority")
