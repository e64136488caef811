"""studies and instances

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("site", sa.String(64), nullable=False, index=True),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("patient_name", sa.String(128)),
        sa.Column("patient_sex", sa.String(8)),
        sa.Column("patient_age", sa.String(16)),
        sa.Column("description", sa.String(256)),
        sa.Column("arrived_at", TZ, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("level", sa.String(16)),
        sa.Column("score", sa.Float),
        sa.Column("ai_read", sa.JSON),
        sa.Column("ai_error", sa.Text),
        sa.Column("model_name", sa.String(64)),
        sa.Column("model_version", sa.String(32)),
        sa.Column("read_at", TZ),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_at", TZ),
        sa.Column("signed_by", sa.String(128)),
        sa.Column("signed_at", TZ),
        sa.Column("final_report", sa.JSON),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_studies_worklist", "studies", ["status", "level", "arrived_at"])
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False, index=True),
        sa.Column("series_uid", sa.String(64)),
        sa.Column("sop_class_uid", sa.String(64)),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(256), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(128)),
        sa.Column("received_at", TZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instances")
    op.drop_index("ix_studies_worklist", table_name="studies")
    op.drop_table("studies")
