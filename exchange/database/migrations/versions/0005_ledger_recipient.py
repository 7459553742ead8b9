"""disclosure ledger: the partner without a credential (exports, pushes), and who asked

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("disclosure") as batch:
        batch.alter_column("credential_id", existing_type=sa.String(length=64), nullable=True)
        batch.add_column(sa.Column("requested_by", sa.String(length=64), nullable=True))
    # Until now exports recorded the exporting analyst and pushes an invented "push:<slug>" as the
    # credential: move both to requested_by, where they belong.
    op.execute(
        "UPDATE disclosure SET requested_by = credential_id, credential_id = NULL "
        "WHERE channel IN ('export', 'push')"
    )
    op.execute("UPDATE disclosure SET requested_by = credential_id WHERE channel = 'taxii'")


def downgrade() -> None:
    op.execute("UPDATE disclosure SET credential_id = requested_by WHERE credential_id IS NULL")
    with op.batch_alter_table("disclosure") as batch:
        batch.drop_column("requested_by")
        batch.alter_column("credential_id", existing_type=sa.String(length=64), nullable=False)
