"""delivery: the ledger says who, how, when and from which collection once per delivery (page,
bundle or push) in `delivery`, and keeps one narrow row per object version delivered in
`disclosure` (delivery, version pk; no id column); the STIX id and version of a row come from
object_version or deleted_version by the version pk. A partner page's ledger costs half as much.

Revision ID: 0015_delivery
Revises: 0014_policy_token
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_delivery"
down_revision = "0014_policy_token"
branch_labels = None
depends_on = None

# Who, how, when and from where: what every row of one delivery repeated before this revision.
DETAILS = ("collection_pk", "partner_pk", "credential_id", "requested_by", "channel", "at_us")


# A ledger row (alias {d}) whose version pk is in both object_version and deleted_version, or
# names neither with the row's STIX id and version.
_UNRESOLVED = (
    "(EXISTS (SELECT 1 FROM object_version o WHERE o.pk = {d}.object_version_pk) AND EXISTS "
    "(SELECT 1 FROM deleted_version g WHERE g.pk = {d}.object_version_pk)) OR (NOT EXISTS "
    "(SELECT 1 FROM object_version o WHERE o.pk = {d}.object_version_pk AND o.stix_id = {d}.stix_id "
    "AND o.version_text = {d}.version) AND NOT EXISTS (SELECT 1 FROM deleted_version g WHERE "
    "g.pk = {d}.object_version_pk AND g.stix_id = {d}.stix_id AND g.version_text = {d}.version))"
)


def _details() -> list[sa.Column]:  # type: ignore[type-arg]
    """The DETAILS columns, as delivery holds them now and disclosure held them before."""
    return [
        sa.Column("collection_pk", sa.Integer(), nullable=False),
        sa.Column("partner_pk", sa.Integer(), nullable=True),
        sa.Column("credential_id", sa.String(length=64), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
    ]


def _numbered(table: str) -> str:
    """`table`'s old ledger rows, each with its delivery's number: a window in time order over the
    DETAILS (NULLs are peers there, as they must be here), with no join on six nullable columns
    (which would be quadratic)."""
    in_time = ", ".join(("at_us", *(c for c in DETAILS if c != "at_us")))
    return f"SELECT d.*, DENSE_RANK() OVER (ORDER BY {in_time}) AS delivery FROM {table} d"


def _drop_trigger() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS partner_keeps_ledger")
    else:
        op.execute("DROP TRIGGER IF EXISTS partner_keeps_ledger ON partner")
        op.execute("DROP FUNCTION IF EXISTS partner_keeps_ledger()")


def _create_trigger(table: str) -> None:
    """Refuse to delete a partner the ledger names (the ledger has no foreign key to partner)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER partner_keeps_ledger BEFORE DELETE ON partner "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE partner_pk = OLD.pk) "
            "BEGIN SELECT RAISE(ABORT, 'the disclosure ledger names this partner: suspend it instead'); END"
        )
    else:
        op.execute(
            "CREATE FUNCTION partner_keeps_ledger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF EXISTS (SELECT 1 FROM {table} WHERE partner_pk = OLD.pk) THEN "
            "RAISE EXCEPTION 'the disclosure ledger names partner %: suspend it instead', OLD.slug "
            "USING ERRCODE = 'foreign_key_violation'; END IF; RETURN OLD; END $$"
        )
        op.execute(
            "CREATE TRIGGER partner_keeps_ledger BEFORE DELETE ON partner "
            "FOR EACH ROW EXECUTE FUNCTION partner_keeps_ledger()"
        )


def upgrade() -> None:
    _drop_trigger()
    op.create_table(
        "delivery",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        *_details(),
        sa.Column("objects", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    details = ", ".join(DETAILS)
    # The rows of one delivery share all of these (one page's rows were written with one at_us).
    # A version deleted before deleted_version existed is named, from here on, only by its pk:
    # keep what the old rows said it was (0013_ledger did the same for the versions gone then).
    op.execute(
        "INSERT INTO deleted_version (pk, collection_pk, stix_id, version_text, deleted_at_us) "
        "SELECT d.object_version_pk, MIN(d.collection_pk), MIN(d.stix_id), MIN(d.version), 0 "
        "FROM disclosure d WHERE NOT EXISTS "
        "(SELECT 1 FROM object_version o WHERE o.pk = d.object_version_pk) AND NOT EXISTS "
        "(SELECT 1 FROM deleted_version g WHERE g.pk = d.object_version_pk) "
        "GROUP BY d.object_version_pk"
    )
    # SQLite gave a deleted newest version's pk to the next version (ingest now numbers past
    # every pk used): a row whose pk is so shared, or whose id and version its pk no longer
    # names, cannot be named by pk alone. Such rows are kept whole, as they were, in
    # disclosure_unresolved, and left out of the new ledger (where they would name another
    # version).
    op.execute(
        f"CREATE TABLE disclosure_unresolved AS SELECT * FROM disclosure d WHERE {_UNRESOLVED.format(d='d')}"
    )
    op.execute(
        f"INSERT INTO delivery (pk, {details}, objects) SELECT delivery, {details}, COUNT(*) "
        f"FROM ({_numbered('disclosure')}) n GROUP BY delivery, {details}"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('delivery', 'pk'), COALESCE(MAX(pk), 0) + 1, false) "
            "FROM delivery"
        )
    op.drop_index("ix_disclosure_partner", table_name="disclosure")
    op.drop_index("ix_disclosure_version_recipient", table_name="disclosure")
    op.rename_table("disclosure", "disclosure_rows")
    op.create_table(
        "disclosure",
        sa.Column("delivery_pk", sa.BigInteger(), nullable=False),
        sa.Column("object_version_pk", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO disclosure (delivery_pk, object_version_pk) SELECT delivery, object_version_pk "
        f"FROM ({_numbered('disclosure_rows')}) n "
        f"WHERE NOT ({_UNRESOLVED.format(d='n')}) ORDER BY pk"
    )
    op.drop_table("disclosure_rows")
    op.create_index("ix_delivery_partner", "delivery", ["partner_pk", "at_us"], unique=False)
    op.create_index("ix_disclosure_version", "disclosure", ["object_version_pk"], unique=False)
    op.create_index("ix_disclosure_delivery", "disclosure", ["delivery_pk"], unique=False)
    _create_trigger("delivery")


def downgrade() -> None:
    _drop_trigger()
    op.rename_table("disclosure", "disclosure_items")
    op.drop_index("ix_disclosure_version", table_name="disclosure_items")
    op.drop_index("ix_disclosure_delivery", table_name="disclosure_items")
    op.create_table(
        "disclosure",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("object_version_pk", sa.BigInteger(), nullable=False),
        sa.Column("stix_id", sa.String(length=300), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        *_details(),
        sa.PrimaryKeyConstraint("pk"),
    )
    details = ", ".join(DETAILS)
    op.execute(
        f"INSERT INTO disclosure (object_version_pk, stix_id, version, {details}) "
        f"SELECT i.object_version_pk, s.stix_id, s.version_text, {', '.join('v.' + c for c in DETAILS)} "
        "FROM disclosure_items i JOIN delivery v ON v.pk = i.delivery_pk JOIN ("
        "SELECT pk, stix_id, version_text FROM object_version UNION ALL "
        "SELECT pk, stix_id, version_text FROM deleted_version) s ON s.pk = i.object_version_pk "
        "ORDER BY i.delivery_pk"
    )
    op.execute(
        f"INSERT INTO disclosure (object_version_pk, stix_id, version, {details}) "
        f"SELECT object_version_pk, stix_id, version, {details} FROM disclosure_unresolved"
    )
    op.drop_table("disclosure_unresolved")
    op.drop_table("disclosure_items")
    op.drop_index("ix_delivery_partner", table_name="delivery")
    op.drop_table("delivery")
    op.create_index("ix_disclosure_partner", "disclosure", ["partner_pk", "at_us"], unique=False)
    op.create_index(
        "ix_disclosure_version_recipient",
        "disclosure",
        ["object_version_pk", "partner_pk", "credential_id"],
        unique=False,
    )
    _create_trigger("disclosure")
