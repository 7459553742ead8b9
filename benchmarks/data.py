"""Benchmark data: realistic STIX 2.1 indicators, their stored rows, and a bulk loader.

Loading a million objects through strict validation takes minutes, so the big collections are
filled by writing the rows the store would hold straight into `object_version` (executemany on
SQLite, COPY on PostgreSQL). `shape_check` proves the shortcut honest: it posts one generated
indicator through the real TAXII endpoint and compares the row the server stored with the row
`stored_row` builds for the same object, column by column.
"""

from __future__ import annotations

import random
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import rfc8785
from sqlalchemy import Engine, select

from exchange.intel.models import Collection, ObjectVersion

TLP_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
STIX_MEDIA = "application/stix+json;version=2.1"

COLUMNS = (
    "collection_pk",
    "stix_id",
    "type",
    "spec_version",
    "version",
    "version_text",
    "date_added_us",
    "tlp_rank",
    "confidence",
    "revoked",
    "is_latest",
    "is_first",
    "origin",
    "added_by",
    "body",
)
_ROW_INDEX = {name: i for i, name in enumerate(COLUMNS)}

_FAMILIES = (
    ("Emotet", "botnet"),
    ("QakBot", "botnet"),
    ("IcedID", "banking-trojan"),
    ("Cobalt Strike", "post-exploitation"),
    ("AgentTesla", "infostealer"),
    ("LockBit", "ransomware"),
    ("AsyncRAT", "remote-access-trojan"),
    ("Mirai", "botnet"),
    ("RedLine", "infostealer"),
    ("Sliver", "post-exploitation"),
)
_SECTORS = ("banking", "telecommunications", "energy", "government", "health", "education")
_TLDS = ("com", "net", "org", "info", "top", "xyz", "ru", "cn", "io", "bd")
_WORDS = (
    "update",
    "cdn",
    "secure",
    "login",
    "mail",
    "static",
    "api",
    "sync",
    "portal",
    "cloud",
    "account",
    "verify",
    "office",
    "files",
    "drive",
    "service",
    "support",
    "billing",
)
_BASE = datetime(2025, 1, 1, tzinfo=UTC)


def stix_time(moment: datetime) -> str:
    """A STIX timestamp with millisecond precision, as most producers write them."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def version_key(stix_timestamp: str) -> str:
    """The store's sortable version text for a millisecond STIX timestamp."""
    head, _, fraction = stix_timestamp[:-1].partition(".")
    return f"{head}.{fraction.ljust(9, '0')}Z"


def canonical(obj: dict[str, Any]) -> str:
    """RFC 8785 text of an object holding only ASCII strings, small integers and lists.

    For such values JCS is sorted keys with no whitespace, which orjson writes ~50x faster
    than the reference implementation; `check_canonical` confirms the two agree.
    """
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


def check_canonical(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        fast, reference = canonical(obj), rfc8785.dumps(obj).decode()
        if fast != reference:
            raise AssertionError(f"canonical text differs from RFC 8785 for {obj['id']}")


class IndicatorFactory:
    """Deterministic (seeded) indicators of ~500-600 canonical bytes, all TLP:GREEN (2.0)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._n = 0

    def _uuid4(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _pattern(self) -> tuple[str, str]:
        rng = self._rng
        kind = rng.randrange(4)
        if kind == 0:
            ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            return "IPv4 C2 address", f"[ipv4-addr:value = '{ip}']"
        host = f"{rng.choice(_WORDS)}-{rng.choice(_WORDS)}{rng.randrange(10_000)}.{rng.choice(_TLDS)}"
        if kind == 1:
            return "C2 domain", f"[domain-name:value = '{host}']"
        if kind == 2:
            path = f"/{rng.choice(_WORDS)}/{rng.getrandbits(48):012x}.php"
            return "payload URL", f"[url:value = 'https://{host}{path}']"
        sha256 = f"{rng.getrandbits(256):064x}"
        return "payload hash", f"[file:hashes.'SHA-256' = '{sha256}']"

    def make(self) -> dict[str, Any]:
        rng = self._rng
        self._n += 1
        family, label = rng.choice(_FAMILIES)
        what, pattern = self._pattern()
        created = _BASE + timedelta(seconds=rng.randrange(500 * 86400), milliseconds=rng.randrange(1000))
        modified = created + timedelta(seconds=rng.choice((0, 0, rng.randrange(1, 30 * 86400))))
        return {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{self._uuid4()}",
            "created": stix_time(created),
            "modified": stix_time(modified),
            "name": f"{family} {what} #{self._n}",
            "description": f"Seen in attacks on {rng.choice(_SECTORS)}",
            "indicator_types": ["malicious-activity"],
            "pattern": pattern,
            "pattern_type": "stix",
            "valid_from": stix_time(created),
            "labels": [label, family.lower().replace(" ", "-")],
            "object_marking_refs": [TLP_GREEN],
            "confidence": rng.randrange(15, 100, 5),
        }

    def batch(self, count: int) -> list[dict[str, Any]]:
        return [self.make() for _ in range(count)]


def stored_row(
    obj: dict[str, Any], *, collection_pk: int, date_added_us: int, tlp_rank: int, added_by: str
) -> tuple[Any, ...]:
    """The `object_version` row ingest would store for a fresh (single-version) indicator."""
    return (
        collection_pk,
        obj["id"],
        obj["type"],
        obj["spec_version"],
        version_key(obj["modified"]),
        obj["modified"],
        date_added_us,
        tlp_rank,
        obj.get("confidence"),
        False,
        True,
        True,
        "analyst",
        added_by,
        canonical(obj),
    )


def shape_check(engine: Engine, *, collection_pk: int, obj: dict[str, Any], added_by: str) -> int:
    """Compare the server's stored row for `obj` with ours; returns the TLP rank it stored.

    Raises AssertionError naming every column that differs.
    """
    with engine.connect() as conn:
        stored = conn.execute(
            select(*(getattr(ObjectVersion, c) for c in COLUMNS)).where(
                ObjectVersion.collection_pk == collection_pk, ObjectVersion.stix_id == obj["id"]
            )
        ).one()
    ours = stored_row(
        obj,
        collection_pk=collection_pk,
        date_added_us=stored.date_added_us,
        tlp_rank=stored.tlp_rank,
        added_by=added_by,
    )
    wrong = [
        f"{name}: server {stored[i]!r} vs harness {ours[i]!r}"
        for i, name in enumerate(COLUMNS)
        if stored[i] != ours[i]
    ]
    if wrong:
        raise AssertionError("bulk rows would differ from ingested ones: " + "; ".join(wrong))
    if stored.tlp_rank is None:
        raise AssertionError("the server stored no TLP rank for a TLP:GREEN indicator")
    return stored.tlp_rank


class BulkLoader:
    """Appends generated rows to a collection, bumping its date_added high-water mark.

    Each transaction takes the collection's row lock (BEGIN IMMEDIATE on SQLite, FOR UPDATE
    on PostgreSQL), as ingest does, so date_added stays strictly increasing. Every row gets
    `tlp_rank`, unless `rank_of` is given: then each row gets `rank_of(obj)`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        tlp_rank: int | None = None,
        added_by: str,
        chunk: int = 50_000,
        rank_of: Callable[[dict[str, Any]], int] | None = None,
    ) -> None:
        if (tlp_rank is None) == (rank_of is None):
            raise ValueError("give either tlp_rank or rank_of")
        self._engine = engine
        self._tlp_rank = tlp_rank
        self._rank_of = rank_of
        self._added_by = added_by
        self._chunk = chunk
        self._table = ObjectVersion.__table__.name
        self._coll_table = Collection.__table__.name

    def load(self, collection_pk: int, objects: Iterator[dict[str, Any]], count: int) -> array:
        """Store `count` objects from the iterator; returns their date_added values in order."""
        dates = array("q")
        left = count
        while left > 0:
            size = min(self._chunk, left)
            chunk = [next(objects) for _ in range(size)]
            dates.extend(self._load_chunk(collection_pk, chunk))
            left -= size
        return dates

    def _rows(self, collection_pk: int, chunk: list[dict[str, Any]], first_us: int) -> Iterator[tuple]:
        rank_of = self._rank_of
        for i, obj in enumerate(chunk):
            yield stored_row(
                obj,
                collection_pk=collection_pk,
                date_added_us=first_us + i,
                tlp_rank=rank_of(obj) if rank_of else self._tlp_rank,
                added_by=self._added_by,
            )

    def _load_chunk(self, collection_pk: int, chunk: list[dict[str, Any]]) -> range:
        raw = self._engine.raw_connection()
        try:
            if self._engine.dialect.name == "sqlite":
                dates = self._sqlite_chunk(raw.driver_connection, collection_pk, chunk)
            else:
                dates = self._postgres_chunk(raw.driver_connection, collection_pk, chunk)
        finally:
            raw.close()
        return dates

    def _first_us(self, high_water: int) -> int:
        return max(time.time_ns() // 1000, high_water + 1)

    def _sqlite_chunk(self, conn: Any, collection_pk: int, chunk: list[dict[str, Any]]) -> range:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            (high_water,) = cur.execute(
                f"SELECT last_date_added_us FROM {self._coll_table} WHERE pk = ?", (collection_pk,)
            ).fetchone()
            first = self._first_us(high_water)
            marks = ", ".join("?" for _ in COLUMNS)
            cur.executemany(
                f"INSERT INTO {self._table} ({', '.join(COLUMNS)}) VALUES ({marks})",
                self._rows(collection_pk, chunk, first),
            )
            last = first + len(chunk) - 1
            cur.execute(
                f"UPDATE {self._coll_table} SET last_date_added_us = ? WHERE pk = ?", (last, collection_pk)
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return range(first, last + 1)

    def _postgres_chunk(self, conn: Any, collection_pk: int, chunk: list[dict[str, Any]]) -> range:
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"SELECT last_date_added_us FROM {self._coll_table} WHERE pk = %s FOR UPDATE",
                    (collection_pk,),
                )
                (high_water,) = cur.fetchone()
                first = self._first_us(high_water)
                with cur.copy(f"COPY {self._table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in self._rows(collection_pk, chunk, first):
                        copy.write_row(row)
                last = first + len(chunk) - 1
                cur.execute(
                    f"UPDATE {self._coll_table} SET last_date_added_us = %s WHERE pk = %s",
                    (last, collection_pk),
                )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return range(first, last + 1)


def endless(factory: IndicatorFactory) -> Iterator[dict[str, Any]]:
    while True:
        yield factory.make()


def medallion_data(
    objects: list[dict[str, Any]], *, api_root: str, collection_id: str, base_url: str
) -> dict[str, Any]:
    """A MemoryBackend data file holding `objects` in one collection, with their manifest."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    manifest = [
        {
            "id": obj["id"],
            "date_added": (start + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "version": obj["modified"],
            "media_type": STIX_MEDIA,
        }
        for i, obj in enumerate(objects)
    ]
    return {
        "/discovery": {
            "title": "medallion benchmark server",
            "description": "OASIS reference TAXII server, memory backend",
            "default": f"{base_url}/{api_root}/",
            "api_roots": [f"{base_url}/{api_root}/"],
        },
        api_root: {
            "information": {
                "title": "benchmark API root",
                "description": "",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 10 * 1024 * 1024,
            },
            "status": [],
            "collections": [
                {
                    "id": collection_id,
                    "title": "indicators",
                    "description": "",
                    "can_read": True,
                    "can_write": True,
                    "media_types": [STIX_MEDIA],
                    "objects": objects,
                    "manifest": manifest,
                }
            ],
        },
    }
