"""initial schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_root",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("max_content_length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "credential",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "collection",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("api_root_pk", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("default_tlp", sa.String(length=16), nullable=False),
        sa.Column("last_date_added_us", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_root_pk"], ["api_root.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("api_root_pk", "alias"),
        sa.UniqueConstraint("id"),
    )
    op.create_table(
        "taxii_status",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("api_root_pk", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("request_timestamp", sa.String(length=40), nullable=False),
        sa.Column("total_count", sa.Integer(), nullable=False),
        sa.Column("success_count", sa.Integer(), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("pending_count", sa.Integer(), nullable=False),
        sa.Column("successes", sa.Text(), nullable=False),
        sa.Column("failures", sa.Text(), nullable=False),
        sa.Column("pendings", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_root_pk"], ["api_root.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("taxii_status", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_taxii_status_created_at"), ["created_at"], unique=False)

    op.create_table(
        "object_version",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("collection_pk", sa.Integer(), nullable=False),
        sa.Column("stix_id", sa.String(length=300), nullable=False),
        sa.Column("type", sa.String(length=250), nullable=False),
        sa.Column("spec_version", sa.String(length=8), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("version_text", sa.String(length=40), nullable=False),
        sa.Column("date_added_us", sa.BigInteger(), nullable=False),
        sa.Column("tlp_rank", sa.SmallInteger(), nullable=True),
        sa.Column("confidence", sa.SmallInteger(), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("is_latest", sa.Boolean(), nullable=False),
        sa.Column("is_first", sa.Boolean(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["collection_pk"], ["collection.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("collection_pk", "date_added_us", name="uq_object_version_date_added"),
        sa.UniqueConstraint("collection_pk", "stix_id", "version", name="uq_object_version_id_version"),
    )
    with op.batch_alter_table("object_version", schema=None) as batch_op:
        batch_op.create_index(
            "ix_object_version_latest_page", ["collection_pk", "is_latest", "date_added_us"], unique=False
        )
        batch_op.create_index("ix_object_version_stix_id", ["stix_id"], unique=False)
        batch_op.create_index(
            "ix_object_version_type_page", ["collection_pk", "type", "date_added_us"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("object_version", schema=None) as batch_op:
        batch_op.drop_index("ix_object_version_type_page")
        batch_op.drop_index("ix_object_version_stix_id")
        batch_op.drop_index("ix_object_version_latest_page")

    op.drop_table("object_version")
    with op.batch_alter_table("taxii_status", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_taxii_status_created_at"))

    op.drop_table("taxii_status")
    op.drop_table("collection")
    op.drop_table("credential")
    op.drop_table("api_root")
