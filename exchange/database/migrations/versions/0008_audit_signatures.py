"""audit trail anchored by signatures: one per event, one on the head

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Events written before this revision stay unsigned; the first signed event covers them
    # through the hash chain (exchange.audit.service.verify says so).
    op.add_column("audit_event", sa.Column("signature", sa.Text(), nullable=True))
    op.add_column("audit_head", sa.Column("signature", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_head", "signature")
    op.drop_column("audit_event", "signature")
