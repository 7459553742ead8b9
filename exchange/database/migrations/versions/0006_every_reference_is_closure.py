"""object_ref: every *_ref/*_refs property counts for referential closure (observed-data's
object_refs, SCO references, extensions), so the stored links are computed again

Revision ID: 0006
Revises: 0005
"""

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_BATCH = 2000


def upgrade() -> None:
    from exchange.intel.ingest import closure_refs

    conn = op.get_bind()
    versions = sa.table("object_version", sa.column("pk", sa.BigInteger), sa.column("body", sa.Text))
    refs = sa.table(
        "object_ref", sa.column("object_version_pk", sa.BigInteger), sa.column("ref_id", sa.String)
    )
    after = 0
    while True:
        rows = conn.execute(
            sa.select(versions.c.pk, versions.c.body)
            .where(versions.c.pk > after)
            .order_by(versions.c.pk)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        after = rows[-1].pk
        pks = [r.pk for r in rows]
        have: set[tuple[int, str]] = {
            (r.object_version_pk, r.ref_id)
            for r in conn.execute(
                sa.select(refs.c.object_version_pk, refs.c.ref_id).where(refs.c.object_version_pk.in_(pks))
            )
        }
        missing = [
            {"object_version_pk": r.pk, "ref_id": ref}
            for r in rows
            for ref in sorted(closure_refs(orjson.loads(r.body)))
            if (r.pk, ref) not in have
        ]
        if missing:
            conn.execute(sa.insert(refs), missing)


def downgrade() -> None:
    # The wider links only withhold more; leaving them in place is safe.
    pass
