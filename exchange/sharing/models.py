"""The policy token: one row the database itself changes whenever an input of a partner's access
changes, so every process can keep what it derived from those inputs until then."""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from exchange.database.core import Base


class PolicyToken(Base):
    """Triggers (migration 0014_policy_token) set `token` to a fresh random value on every
    insert, delete and relevant update of partner (slug, status, identity), agreement,
    agreement_version and collection (id, alias, root, default TLP), in the same transaction.
    Random rather than a counter: a rolled-back change's value never comes back, so nothing
    derived inside that transaction can be mistaken for a committed state."""

    __tablename__ = "policy_token"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64))
