"""Provenance chains: from whom each stored version came, and to whom it went (the ledger)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session


def partner_names(db: Session) -> dict[int, str]:
    """Partner pk -> slug, for every partner."""
    from exchange.partner.models import Partner

    return {row.pk: row.slug for row in db.execute(select(Partner.pk, Partner.slug))}


def came_from(row: Any, names: dict[int, str]) -> dict[str, Any]:
    """Where one version came from: its origin kind, the partner that sent it, the originator."""
    out: dict[str, Any] = {"origin": row.origin}
    if row.origin_partner_pk is not None:
        out["partner"] = names.get(row.origin_partner_pk, "(unknown partner)")
    if row.originator_partner_pk is not None:
        out["originator"] = names.get(row.originator_partner_pk, "(unknown partner)")
    if row.origin == "feed" and row.added_by:
        out["feed"] = row.added_by.removeprefix("feed:")
    if row.origin == "analyst" and row.added_by:
        out["credential"] = row.added_by
    return out


def first_source(row: Any, names: dict[int, str]) -> dict[str, Any]:
    """Where the object first came from (the earliest stored version's origin)."""
    found = came_from(row, names)
    found.pop("originator", None)
    return found


def received_by(db: Session, version_pks: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Version pk -> the partners that received it, by channel, from the disclosure ledger."""
    from exchange.disclosure.models import Delivery, Disclosure
    from exchange.intel.timestamps import us_to_text
    from exchange.partner.models import Partner

    if not version_pks:
        return {}
    out: dict[int, list[dict[str, Any]]] = {}
    for row in db.execute(
        select(
            Disclosure.object_version_pk,
            Partner.slug,
            Delivery.channel,
            func.min(Delivery.at_us).label("first_at"),
            func.count().label("times"),
        )
        .join(Delivery, Delivery.pk == Disclosure.delivery_pk)
        .join(Partner, Partner.pk == Delivery.partner_pk, isouter=True)
        .where(Disclosure.object_version_pk.in_(list(version_pks)))
        .group_by(Disclosure.object_version_pk, Partner.slug, Delivery.channel)
        .order_by(Disclosure.object_version_pk, Partner.slug, Delivery.channel)
    ):
        out.setdefault(row.object_version_pk, []).append(
            {
                "partner": row.slug,
                "channel": row.channel,
                "first_received": us_to_text(row.first_at),
                "times": row.times,
            }
        )
    return out
