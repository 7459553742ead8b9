"""web page sessions

Revision ID: 0009_ui
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_ui"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_session",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "credential_id", sa.String(64), sa.ForeignKey("credential.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ui_session_credential_id", "ui_session", ["credential_id"])


def downgrade() -> None:
    op.drop_index("ix_ui_session_credential_id", table_name="ui_session")
    op.drop_table("ui_session")
