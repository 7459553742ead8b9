"""peers: partners whose own exchange we pull, with the key set their pages must verify with

Revision ID: 0012_peer
Revises: 0011_origin
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_peer"
down_revision = "0011_origin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peer",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("partner_pk", sa.Integer(), nullable=False),
        sa.Column("our_name", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=300), nullable=False),
        sa.Column("jwks_url", sa.Text(), nullable=True),
        sa.Column("ca_bundle", sa.Text(), nullable=True),
        sa.Column("jwks", sa.Text(), nullable=False),
        sa.Column("jwks_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("jwks_tried_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["partner_pk"], ["partner.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("partner_pk"),
    )


def downgrade() -> None:
    op.drop_table("peer")
