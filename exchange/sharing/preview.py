"""'What would partner X see': counts by collection, type and TLP, a sample, how many objects
each rule withholds, and what a draft changes compared with the agreement in force.

Every count is a grouped SQL query over the latest versions of a collection, with the same
predicates the TAXII reads use (`visibility.read_rules`), so a preview costs a few scans
whatever the store holds. An object withheld for two reasons counts under both reasons;
`withheld` counts it once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import Session

from exchange.agreement import service as agreement_service
from exchange.intel.models import ObjectVersion
from exchange.intel.timestamps import now_us
from exchange.partner import service as partner_service
from exchange.sharing import visibility
from exchange.sharing.access import doc_grants
from policies.schemas import AgreementDoc, type_warnings
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
    current = agreement_service.current_doc_for(db, partner.pk)
    unchanged = current is not None and current.to_document() == doc.to_document()
    # Previewing the agreement in force itself changes nothing; a stored draft would change what
    # activating it changes, so it is compared like any other.
    same = unchanged and doc.status != "draft"
    in_force = doc_grants(db, current, now=now, partner_active=partner.status == "active") if current else {}
    in_force_all = [cg for _, cg in in_force.values()]
    report: dict[str, Any] = {
        "partner": doc.partner,
        "status": doc.status,
        "previewed_as_active": doc.status == "draft",
        "partner_status": partner.status,
        "warnings": type_warnings(doc),
        "collections": [],
        "total": 0,
        "withheld": 0,
        "withheld_by": {},
        # Compared with what the partner is served now (nothing when no agreement is in force).
        "compared_with": "agreement in force" if in_force else "nothing (no agreement in force)",
        "unchanged": unchanged,
        "change": _empty_change(),
    }
    change = report["change"]
    for alias in aliases:
        if alias not in grants:
            entry = _ungranted(alias, _empty_change())
            if alias in in_force and not same:
                coll, _ = in_force[alias]
                # Named by the draft, but granting nothing now: outside its validity window,
                # suspended, or the partner is suspended.
                entry["change"] = _compare(
                    db,
                    coll.pk,
                    None,
                    in_force[alias][1],
                    in_force_all,
                    stamp,
                    dropped="not_in_force",
                )[1]
            _add_change(change, entry["change"])
            report["collections"].append(entry)
            continue
        coll, cg = grants[alias]
        rules = visibility.read_rules(cg, all_grants, now_us=stamp)
        where = [
            ObjectVersion.collection_pk == coll.pk,
            ObjectVersion.is_latest.is_(True),
            *(rule.predicate for rule in rules),
        ]
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
        withheld, coll_change = _compare(
            db,
            coll.pk,
            rules,
            None if same else in_force.get(alias, (None, None))[1],
            in_force_all,
            stamp,
        )
        if same:
            coll_change = _empty_change()
        report["total"] += total
        report["withheld"] += withheld["total"]
        _add_counts(report["withheld_by"], withheld["by_reason"])
        _add_change(change, coll_change)
        report["collections"].append(
            {
                "collection": alias,
                "granted": True,
                "total": total,
                "by_type": by_type,
                "by_tlp": by_tlp,
                "sample": sample,
                "withheld": withheld["total"],
                "withheld_by": withheld["by_reason"],
                "change": coll_change,
            }
        )
    # Collections only the agreement in force grants: all they show now stops.
    for alias, (coll, cg) in in_force.items():
        if alias in aliases or same:
            continue
        gone = _compare(db, coll.pk, None, cg, in_force_all, stamp)[1]
        _add_change(change, gone)
        report["collections"].append(_ungranted(alias, gone))
    return report


def _ungranted(alias: str, change: dict[str, Any]) -> dict[str, Any]:
    """A collection's entry when the previewed agreement grants it nothing (with what that changes)."""
    return {
        "collection": alias,
        "granted": False,
        "total": 0,
        "by_type": {},
        "by_tlp": {},
        "sample": [],
        "withheld": 0,
        "withheld_by": {},
        "change": change,
    }


def _empty_change() -> dict[str, Any]:
    return {
        "becomes_visible": 0,
        "becomes_withheld": 0,
        "withheld_by": {},
    }


def _add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for reason, n in counts.items():
        into[reason] = into.get(reason, 0) + n


def _add_change(into: dict[str, Any], change: dict[str, Any]) -> None:
    into["becomes_visible"] += change["becomes_visible"]
    into["becomes_withheld"] += change["becomes_withheld"]
    _add_counts(into["withheld_by"], change["withheld_by"])


def _compare(
    db: Session,
    collection_pk: int,
    rules: list[visibility.Rule] | None,
    current: visibility.CollectionGrant | None,
    current_all: list[visibility.CollectionGrant],
    stamp: int,
    *,
    dropped: str = "collection",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Which draft rules a collection's latest versions fail (`rules` None: the draft does not
    grant the collection) and how that compares with the agreement in force (`current` None:
    it does not grant it). Returns (withheld under the draft, the change).

    Grouped counts only. The cheap per-row rules are flags in GROUP BY; a deep rule (the
    reference closure) only ever stands at the top of a WHERE, beside the others, never inside
    an expression: SQLite's parser refuses it nested one level further. So each count is
    "all rows" minus "rows passing", per combination of per-row flags.
    """
    scope = [ObjectVersion.collection_pk == collection_pk, ObjectVersion.is_latest.is_(True)]
    flat = [rule for rule in rules or () if not rule.deep]
    deep = [rule for rule in rules or () if rule.deep]
    flags: list[ColumnElement[int]] = [
        case((rule.predicate, 0), else_=1).label(f"r{i}") for i, rule in enumerate(flat)
    ]
    width = len(flags)

    def counts(*where: ColumnElement[bool]) -> dict[tuple[int, ...], int]:
        if not flags:
            return {(): int(db.scalar(select(func.count()).where(*scope, *where)) or 0)}
        query = select(*flags, func.count()).where(*scope, *where).group_by(*flags)
        return {tuple(int(v) for v in row[:width]): int(row[width]) for row in db.execute(query)}

    def passing(
        base: tuple[ColumnElement[bool], ...], extra: list[visibility.Rule]
    ) -> dict[tuple[int, ...], int]:
        return counts(*base, *(rule.predicate for rule in extra))

    withheld: dict[str, Any] = {"total": 0, "by_reason": {}}
    change = _empty_change()
    clean = (0,) * width
    shown_now: tuple[ColumnElement[bool], ...] = ()
    if current is not None:
        shown_now = tuple(visibility.read_predicates(current, current_all, now_us=stamp))
    if rules is None:
        if current is not None:
            gone = sum(counts(*shown_now).values())
            change["becomes_withheld"] = gone
            if gone:
                change["withheld_by"][dropped] = gone
        return withheld, change

    def tally(
        every: dict[tuple[int, ...], int],
        ok_all: dict[tuple[int, ...], int],
        by_deep: list[dict[tuple[int, ...], int]],
    ) -> tuple[int, dict[str, int]]:
        # rows not visible under the draft, and by reason (a row counts once per reason it fails)
        total = sum(every.values()) - ok_all.get(clean, 0)
        reasons: dict[str, int] = {}
        for i, rule in enumerate(flat):
            n = sum(v for key, v in every.items() if key[i])
            if n:
                reasons[rule.reason] = reasons.get(rule.reason, 0) + n
        for rule, ok in zip(deep, by_deep, strict=True):
            n = sum(every.values()) - sum(ok.values())
            if n:
                reasons[rule.reason] = reasons.get(rule.reason, 0) + n
        return total, reasons

    every = counts()
    ok_all = passing((), deep)
    by_deep = [ok_all] if len(deep) == 1 else [passing((), [rule]) for rule in deep]
    withheld["total"], withheld["by_reason"] = tally(every, ok_all, by_deep)
    visible_draft = ok_all.get(clean, 0)
    if current is None:
        change["becomes_visible"] = visible_draft
        return withheld, change
    shown = counts(*shown_now)
    shown_ok_all = passing(shown_now, deep)
    shown_by_deep = [shown_ok_all] if len(deep) == 1 else [passing(shown_now, [rule]) for rule in deep]
    both = shown_ok_all.get(clean, 0)
    change["becomes_visible"] = visible_draft - both
    change["becomes_withheld"], change["withheld_by"] = tally(shown, shown_ok_all, shown_by_deep)
    return withheld, change
