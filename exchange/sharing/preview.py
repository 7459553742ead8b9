"""'What would partner X see': counts by collection, type and TLP, and a sample."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from exchange.intel.models import ObjectVersion
from exchange.intel.timestamps import now_us
from exchange.partner import service as partner_service
from exchange.sharing import visibility
from exchange.sharing.access import doc_grants
from policies.schemas import AgreementDoc
from policies.tlp import LEVELS


def preview(db: Session, doc: AgreementDoc, *, now: datetime, sample_size: int = 5) -> dict[str, Any]:
    """What the partner would be served now under `doc` (a draft is previewed as if active)."""
    partner = partner_service.get_by_slug(db, doc.partner)
    assert partner is not None
    as_if = doc.model_copy(update={"status": "active"}) if doc.status == "draft" else doc
    stamp = now_us()
    aliases = as_if.read.collections if as_if.read else []
    grants = doc_grants(db, as_if, now=now, partner_active=partner.status == "active")
    all_grants = [cg for _, cg in grants.values()]
    report: dict[str, Any] = {
        "partner": doc.partner,
        "status": doc.status,
        "previewed_as_active": doc.status == "draft",
        "partner_status": partner.status,
        "collections": [],
        "total": 0,
    }
    for alias in aliases:
        if alias not in grants:
            report["collections"].append(
                {
                    "collection": alias,
                    "granted": False,
                    "total": 0,
                    "by_type": {},
                    "by_tlp": {},
                    "withheld": {},
                    "sample": [],
                }
            )
            continue
        coll, cg = grants[alias]
        where = [
            ObjectVersion.collection_pk == coll.pk,
            ObjectVersion.is_latest.is_(True),
            *visibility.read_predicates(cg, all_grants, now_us=stamp),
        ]
        # Originator control's own reasons: what every other row rule allows but it withholds.
        others = [
            ObjectVersion.collection_pk == coll.pk,
            ObjectVersion.is_latest.is_(True),
            *visibility.row_predicates(cg, now_us=stamp, relay=False),
            ~visibility.relay_predicate(cg.relay),
        ]
        echo = visibility.echo_predicate(cg.relay)
        withheld = {"originator": 0, "relay": 0}
        for is_echo, count in db.execute(select(echo, func.count()).where(*others).group_by(echo)):
            withheld["originator" if is_echo else "relay"] += count
        level = func.coalesce(ObjectVersion.tlp_rank, literal(cg.default_tlp_rank))
        by_type: dict[str, int] = {}
        by_tlp: dict[str, int] = {}
        for kind, rank_, count in db.execute(
            select(ObjectVersion.type, level, func.count()).where(*where).group_by(ObjectVersion.type, level)
        ):
            by_type[kind] = by_type.get(kind, 0) + count
            by_tlp[LEVELS[rank_]] = by_tlp.get(LEVELS[rank_], 0) + count
        sample = [
            orjson.loads(body)
            for body in db.scalars(
                select(ObjectVersion.body)
                .where(*where)
                .order_by(ObjectVersion.date_added_us.desc())
                .limit(sample_size)
            )
        ]
        total = sum(by_type.values())
        report["total"] += total
        report["collections"].append(
            {
                "collection": alias,
                "granted": True,
                "total": total,
                "by_type": by_type,
                "by_tlp": by_tlp,
                "withheld": withheld,
                "sample": sample,
            }
        )
    return report
