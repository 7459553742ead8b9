"""originator control: the partner each object version came from, the partner that first
brought the object in, and a sighting's target; backfilled from what is stored

Revision ID: 0009
Revises: 0008
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CHUNK = 500


def upgrade() -> None:
    op.add_column("object_version", sa.Column("origin_partner_pk", sa.Integer(), nullable=True))
    op.add_column("object_version", sa.Column("originator_partner_pk", sa.Integer(), nullable=True))
    op.add_column("object_version", sa.Column("sighting_of_ref", sa.String(length=300), nullable=True))
    op.create_index("ix_object_version_sighting_of", "object_version", ["sighting_of_ref"])
    bind = op.get_bind()
    # Partner submissions name the credential that posted them; its partner is the source.
    bind.execute(
        sa.text(
            "UPDATE object_version SET origin_partner_pk = "
            "(SELECT credential.partner_pk FROM credential WHERE credential.id = object_version.added_by) "
            "WHERE origin = 'partner'"
        )
    )
    # A partner submission whose credential is gone: a partner nobody may relay for (fail closed,
    # as exchange.intel.ingest.UNKNOWN_PARTNER_PK).
    bind.execute(
        sa.text(
            "UPDATE object_version SET origin_partner_pk = 0 "
            "WHERE origin = 'partner' AND origin_partner_pk IS NULL"
        )
    )
    # The originator of a versioned object is the source of its earliest stored version; SCOs
    # (no `created`) have none: every source that saw a value stores the same id.
    ids = [
        row[0]
        for row in bind.execute(
            sa.text("SELECT DISTINCT stix_id FROM object_version WHERE origin_partner_pk IS NOT NULL")
        )
    ]
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        rows = bind.execute(
            sa.text(
                "SELECT stix_id, origin_partner_pk, body FROM object_version "
                "WHERE stix_id IN :ids ORDER BY date_added_us, pk"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": part},
        )
        first: dict[str, int | None] = {}
        for stix_id, source, body in rows:
            if stix_id in first:
                continue
            try:
                versioned = "created" in json.loads(body)
            except ValueError:
                versioned = True  # unreadable: keep it under the source's control
            first[stix_id] = source if versioned else None
        for stix_id, originator in first.items():
            if originator is not None:
                bind.execute(
                    sa.text("UPDATE object_version SET originator_partner_pk = :p WHERE stix_id = :s"),
                    {"p": originator, "s": stix_id},
                )
    pks = [row[0] for row in bind.execute(sa.text("SELECT pk FROM object_version WHERE type = 'sighting'"))]
    for start in range(0, len(pks), _CHUNK):
        for pk, body in bind.execute(
            sa.text("SELECT pk, body FROM object_version WHERE pk IN :pks").bindparams(
                sa.bindparam("pks", expanding=True)
            ),
            {"pks": pks[start : start + _CHUNK]},
        ):
            try:
                target = json.loads(body).get("sighting_of_ref")
            except (ValueError, AttributeError):
                continue
            if isinstance(target, str) and len(target) <= 300:
                bind.execute(
                    sa.text("UPDATE object_version SET sighting_of_ref = :t WHERE pk = :pk"),
                    {"t": target, "pk": pk},
                )


def downgrade() -> None:
    op.drop_index("ix_object_version_sighting_of", table_name="object_version")
    with op.batch_alter_table("object_version") as batch:
        batch.drop_column("sighting_of_ref")
        batch.drop_column("originator_partner_pk")
        batch.drop_column("origin_partner_pk")
