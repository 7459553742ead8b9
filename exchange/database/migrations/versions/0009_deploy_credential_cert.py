"""credentials bound to a partner's client certificate (SHA-256 fingerprint)

Revision ID: 0009_deploy
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_deploy"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credential") as batch:
        batch.add_column(sa.Column("cert_sha256", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_credential_cert_sha256", ["cert_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("credential") as batch:
        batch.drop_constraint("uq_credential_cert_sha256", type_="unique")
        batch.drop_column("cert_sha256")
