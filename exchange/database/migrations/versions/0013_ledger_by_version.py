"""ledger by version: deleted_version keeps deleted object versions' ids; the ledger's index on
the STIX id goes (rows are found through the version pk instead)

Revision ID: 0013_ledger
Revises: 0012_peer
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_ledger"
down_revision = "0012_peer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_version",
        sa.Column("pk", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("collection_pk", sa.Integer(), nullable=False),
        sa.Column("stix_id", sa.String(length=300), nullable=False),
        sa.Column("version_text", sa.String(length=40), nullable=False),
        sa.Column("deleted_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_deleted_version_stix_id", "deleted_version", ["stix_id"], unique=False)
    # Versions deleted before this revision: the ledger rows that served them say what they were
    # (when is no longer known: 0).
    op.execute(
        "INSERT INTO deleted_version (pk, collection_pk, stix_id, version_text, deleted_at_us) "
        "SELECT d.object_version_pk, MIN(d.collection_pk), MIN(d.stix_id), MIN(d.version), 0 "
        "FROM disclosure d WHERE NOT EXISTS "
        "(SELECT 1 FROM object_version o WHERE o.pk = d.object_version_pk) "
        "GROUP BY d.object_version_pk"
    )
    with op.batch_alter_table("disclosure", schema=None) as batch_op:
        batch_op.drop_index("ix_disclosure_object")


def downgrade() -> None:
    with op.batch_alter_table("disclosure", schema=None) as batch_op:
        batch_op.create_index("ix_disclosure_object", ["stix_id", "version"], unique=False)
    op.drop_index("ix_deleted_version_stix_id", table_name="deleted_version")
    op.drop_table("deleted_version")
