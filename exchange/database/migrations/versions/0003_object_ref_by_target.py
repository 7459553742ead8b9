"""index object_ref by the referenced id (sightings of an object)

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_object_ref_ref_id", "object_ref", ["ref_id"])


def downgrade() -> None:
    op.drop_index("ix_object_ref_ref_id", table_name="object_ref")
