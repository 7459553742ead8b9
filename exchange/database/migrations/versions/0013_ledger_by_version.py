"""ledger by version: deleted_version keeps deleted object versions' ids; the ledger's index on
the STIX id goes (rows are found through the version pk instead), and its foreign key to partner
becomes a trigger that refuses to delete a partner the ledger names (PostgreSQL checked the key
row by row on every ledger write)

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
    with op.batch_alter_table("disclosure", schema=None, naming_convention=NAMES) as batch_op:
        batch_op.drop_index("ix_disclosure_object")
        batch_op.drop_constraint(_fk_name(), type_="foreignkey")
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER partner_keeps_ledger BEFORE DELETE ON partner "
            "WHEN EXISTS (SELECT 1 FROM disclosure WHERE partner_pk = OLD.pk) "
            "BEGIN SELECT RAISE(ABORT, 'the disclosure ledger names this partner: suspend it instead'); END"
        )
    else:
        op.execute(
            "CREATE FUNCTION partner_keeps_ledger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF EXISTS (SELECT 1 FROM disclosure WHERE partner_pk = OLD.pk) THEN "
            "RAISE EXCEPTION 'the disclosure ledger names partner %: suspend it instead', OLD.slug "
            "USING ERRCODE = 'foreign_key_violation'; END IF; RETURN OLD; END $$"
        )
        op.execute(
            "CREATE TRIGGER partner_keeps_ledger BEFORE DELETE ON partner "
            "FOR EACH ROW EXECUTE FUNCTION partner_keeps_ledger()"
        )


# SQLite's foreign key has no name of its own: batch mode names it by this convention.
NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _fk_name() -> str:
    if op.get_bind().dialect.name == "sqlite":
        return "fk_disclosure_partner_pk_partner"
    return "disclosure_partner_pk_fkey"


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS partner_keeps_ledger")
    else:
        op.execute("DROP TRIGGER IF EXISTS partner_keeps_ledger ON partner")
        op.execute("DROP FUNCTION IF EXISTS partner_keeps_ledger()")
    with op.batch_alter_table("disclosure", schema=None) as batch_op:
        batch_op.create_index("ix_disclosure_object", ["stix_id", "version"], unique=False)
        batch_op.create_foreign_key("disclosure_partner_pk_fkey", "partner", ["partner_pk"], ["pk"])
    op.drop_index("ix_deleted_version_stix_id", table_name="deleted_version")
    op.drop_table("deleted_version")
