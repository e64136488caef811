"""reading: users, tokens revoked, corrections, audit; DICOM instance attributes; claim expiry

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("claim_expires_at", TZ))
        batch.add_column(sa.Column("report_status", sa.String(16), nullable=False, server_default="preliminary"))
        batch.add_column(sa.Column("accession_number", sa.String(64)))
        batch.add_column(sa.Column("study_date", sa.String(8)))
        batch.add_column(sa.Column("processing_since", TZ))
        batch.add_column(sa.Column("last_instance_at", TZ))
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("modality", sa.String(16)))
        batch.add_column(sa.Column("body_part", sa.String(64)))
        batch.add_column(sa.Column("view_position", sa.String(16)))
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="original"))
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(128), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("sites", sa.JSON, nullable=False),
        sa.Column("display_name", sa.String(128)),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("revoked_at", TZ, nullable=False),
        sa.Column("expires_at", TZ),
    )
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_uid", sa.String(64), nullable=False, index=True),
        sa.Column("signed_by", sa.String(128), nullable=False),
        sa.Column("signed_at", TZ, nullable=False),
        sa.Column("agree", sa.Boolean, nullable=False),
        sa.Column("ai_findings", sa.JSON),
        sa.Column("final_findings", sa.JSON, nullable=False),
        sa.Column("impression", sa.Text),
        sa.Column("model_name", sa.String(64)),
        sa.Column("model_version", sa.String(32)),
        sa.Column("amends", sa.Integer),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False, index=True),
        sa.Column("user", sa.String(128)),
        sa.Column("role", sa.String(16)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("study_uid", sa.String(64), index=True),
        sa.Column("detail", sa.JSON),
        sa.Column("client", sa.String(64)),
        sa.Column("prev_hash", sa.String(64)),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("corrections")
    op.drop_table("revoked_tokens")
    op.drop_table("users")
    with op.batch_alter_table("instances") as batch:
        for column in ("role", "view_position", "body_part", "modality"):
            batch.drop_column(column)
    with op.batch_alter_table("studies") as batch:
        for column in (
            "last_instance_at",
            "processing_since",
            "study_date",
            "accession_number",
            "report_status",
            "claim_expires_at",
        ):
            batch.drop_column(column)
