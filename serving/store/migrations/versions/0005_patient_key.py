"""patient key: who the patient is for comparisons with priors (keyed hash of the identity rule)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("patient_key", sa.String(64)))
        batch.create_index("ix_studies_patient_key", ["patient_key"])


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_index("ix_studies_patient_key")
        batch.drop_column("patient_key")
