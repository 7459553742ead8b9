"""stream_release: objects that enter partners' streams after a late reference or an agreement
change; the ledger indexed by object version for the "received already?" check

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_release",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("collection_pk", sa.Integer(), nullable=False),
        sa.Column("object_version_pk", sa.BigInteger(), nullable=False),
        sa.Column("partner_pk", sa.Integer(), nullable=True),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["collection_pk"], ["collection.pk"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["object_version_pk"], ["object_version.pk"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["partner_pk"], ["partner.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_stream_release_page", "stream_release", ["collection_pk", "partner_pk", "at_us"])
    op.create_index(
        "ix_disclosure_version_recipient", "disclosure", ["object_version_pk", "partner_pk", "credential_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_disclosure_version_recipient", table_name="disclosure")
    op.drop_index("ix_stream_release_page", table_name="stream_release")
    op.drop_table("stream_release")
