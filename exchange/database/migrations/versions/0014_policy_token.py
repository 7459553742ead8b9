"""policy token: a random value the database renews whenever an input of a partner's access
changes (partners, agreements, their versions, collections)

Revision ID: 0014_policy_token
Revises: 0013_ledger
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_policy_token"
down_revision = "0013_ledger"
branch_labels = None
depends_on = None

# table -> the columns whose update changes access (None: any update)
WATCHED = {
    "partner": ("slug", "status", "identity_id"),
    "agreement": None,
    "agreement_version": None,
    "collection": ("id", "alias", "api_root_pk", "default_tlp"),
}


def upgrade() -> None:
    op.create_table(
        "policy_token",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        fresh = "lower(hex(randomblob(16)))"
    else:
        fresh = "md5(random()::text || clock_timestamp()::text)"
        op.execute(
            "CREATE FUNCTION renew_policy_token() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN UPDATE policy_token SET token = {fresh} WHERE pk = 1; RETURN NULL; END $$"
        )
    op.execute(f"INSERT INTO policy_token (pk, token) VALUES (1, {fresh})")
    for table, columns in WATCHED.items():
        update = "UPDATE" + (f" OF {', '.join(columns)}" if columns else "")
        if sqlite:
            for event in ("INSERT", "DELETE", update):
                name = f"policy_token_{table}_{event.split()[0].lower()}"
                op.execute(
                    f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                    f"BEGIN UPDATE policy_token SET token = {fresh} WHERE pk = 1; END"
                )
        else:
            op.execute(
                f"CREATE TRIGGER policy_token_{table} AFTER INSERT OR DELETE OR {update} ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION renew_policy_token()"
            )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in WATCHED:
        if sqlite:
            for event in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS policy_token_{table}_{event}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS policy_token_{table} ON {table}")
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS renew_policy_token()")
    op.drop_table("policy_token")
