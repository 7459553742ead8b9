"""partners agreements audit disclosure

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_action"), ["action"], unique=False)

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "partner",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("contact", sa.String(length=320), nullable=False),
        sa.Column("identity_id", sa.String(length=300), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("public_keys", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "agreement",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("partner_pk", sa.Integer(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["partner_pk"], ["partner.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("partner_pk"),
    )
    op.create_table(
        "disclosure",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("object_version_pk", sa.BigInteger(), nullable=False),
        sa.Column("stix_id", sa.String(length=300), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("collection_pk", sa.Integer(), nullable=False),
        sa.Column("partner_pk", sa.Integer(), nullable=True),
        sa.Column("credential_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_pk"],
            ["partner.pk"],
        ),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("disclosure", schema=None) as batch_op:
        batch_op.create_index("ix_disclosure_object", ["stix_id", "version"], unique=False)
        batch_op.create_index("ix_disclosure_partner", ["partner_pk", "at_us"], unique=False)

    op.create_table(
        "agreement_version",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("agreement_pk", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agreement_pk"], ["agreement.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("agreement_pk", "version"),
    )
    op.create_table(
        "object_ref",
        sa.Column("object_version_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ref_id", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(["object_version_pk"], ["object_version.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("object_version_pk", "ref_id"),
    )
    with op.batch_alter_table("credential", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partner_pk", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_credential_partner_pk"), ["partner_pk"], unique=False)
        batch_op.create_foreign_key(
            "fk_credential_partner_pk", "partner", ["partner_pk"], ["pk"], ondelete="CASCADE"
        )

    with op.batch_alter_table("object_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audience", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("object_version", schema=None) as batch_op:
        batch_op.drop_column("audience")

    with op.batch_alter_table("credential", schema=None) as batch_op:
        batch_op.drop_constraint("fk_credential_partner_pk", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_credential_partner_pk"))
        batch_op.drop_column("partner_pk")

    op.drop_table("object_ref")
    op.drop_table("agreement_version")
    with op.batch_alter_table("disclosure", schema=None) as batch_op:
        batch_op.drop_index("ix_disclosure_partner")
        batch_op.drop_index("ix_disclosure_object")

    op.drop_table("disclosure")
    op.drop_table("agreement")
    op.drop_table("partner")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_action"))

    op.drop_table("audit_event")
