"""The store on SQLite and PostgreSQL: versions, duplicates, date_added, atomicity."""

from __future__ import annotations

import itertools
import uuid

import pytest
from sqlalchemy import select

from exchange.intel import ingest as ingest_service
from exchange.intel import query, service
from exchange.intel.models import Collection, ObjectVersion
from tests.support.stix import indicator


@pytest.fixture
def coll(db, settings) -> Collection:  # type: ignore[no-untyped-def]
    root = service.get_api_root(db, settings.api_root)
    return service.create_collection(db, api_root=root, alias=f"t-{uuid.uuid4().hex[:10]}", title="t")


def rows(db, coll):  # type: ignore[no-untyped-def]
    return list(
        db.scalars(
            select(ObjectVersion)
            .where(ObjectVersion.collection_pk == coll.pk)
            .order_by(ObjectVersion.date_added_us)
        )
    )


def test_versions_flags_follow_modified_not_arrival(db, coll):
    base = indicator()
    stamps = ["2026-03-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"]
    for stamp in stamps:
        ingest_service.ingest(db, collection=coll, objects=[dict(base, modified=stamp)], origin="analyst")
    stored = {r.version_text: (r.is_first, r.is_latest) for r in rows(db, coll)}
    assert stored == {stamps[1]: (True, False), stamps[2]: (False, False), stamps[0]: (False, True)}


def test_duplicates_add_no_rows_and_date_added_strictly_increases(db, coll):
    objs = [indicator(i) for i in range(50)]
    first = ingest_service.ingest(db, collection=coll, objects=objs, origin="feed")
    again = ingest_service.ingest(db, collection=coll, objects=objs, origin="feed")
    assert (first.created, again.created, again.duplicates) == (50, 0, 50)
    added = [r.date_added_us for r in rows(db, coll)]
    assert len(added) == 50 and all(a < b for a, b in itertools.pairwise(added))
    db.refresh(coll)
    assert coll.last_date_added_us == added[-1]


def test_object_without_timestamps_is_deduplicated_by_content(db, coll):
    sco = {
        "type": "ipv4-addr",
        "spec_version": "2.1",
        "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd",
        "value": "198.51.100.3",
    }
    ingest_service.ingest(db, collection=coll, objects=[sco], origin="feed")
    again = ingest_service.ingest(db, collection=coll, objects=[sco], origin="feed")
    assert again.duplicates == 1 and len(rows(db, coll)) == 1


def test_canonical_text_is_stored(db, coll):
    import rfc8785

    obj = indicator(x_custom_b=1, x_custom_a=2.50)
    ingest_service.ingest(db, collection=coll, objects=[obj], origin="analyst")
    assert rows(db, coll)[0].body == rfc8785.dumps(obj).decode()


def test_page_query_is_keyset_paged(db, coll):
    ingest_service.ingest(db, collection=coll, objects=[indicator(i) for i in range(10)], origin="analyst")
    seen, after, more = [], None, True
    while more:
        page, more = query.page_by_date_added(
            db, collection_pk=coll.pk, flt=query.ObjectFilter(), after_us=after, limit=3
        )
        seen += [r.date_added_us for r in page]
        after = page[-1].date_added_us
    assert seen == [r.date_added_us for r in rows(db, coll)]


def test_an_sco_any_source_saw_is_stored_by_each_of_them(db, coll, engine):
    """SCOs are not versioned (their id derives from their value): the same observable from the
    CERT, a feed and a partner is no one's "new version" of another's object."""
    from exchange.intel import service
    from exchange.intel.models import Collection

    sco = {
        "type": "domain-name",
        "spec_version": "2.1",
        "id": f"domain-name--{uuid.uuid4()}",
        "value": f"shared-{uuid.uuid4().hex[:8]}.example",
    }
    root = db.get(Collection, coll.pk)
    assert root is not None
    others = [
        service.create_collection(
            db, api_root=service.get_api_root(db, "root"), alias=f"c-{uuid.uuid4().hex[:8]}", title="t"
        )
        for _ in range(2)
    ]
    first = ingest_service.ingest(
        db, collection=root, objects=[sco], origin="analyst", added_by="cred-analyst"
    )
    by_feed = ingest_service.ingest(db, collection=others[0], objects=[sco], origin="feed")
    by_partner = ingest_service.ingest(
        db,
        collection=others[1],
        objects=[sco | {"x_seen_by": "partner"}],
        origin="partner",
        added_by="cred-p",
    )
    assert first.failures == [] and by_feed.failures == [] and by_partner.failures == []
    assert first.created == by_feed.created == by_partner.created == 1
