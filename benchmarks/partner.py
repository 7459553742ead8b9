"""Section 6 data: a collection half of which a partner's agreement withholds, the partner, its
agreement, and the checks on what it received and what the disclosure ledger recorded.

The harness decides what the partner may see from the objects themselves (their TLP marking and
confidence, read here with a table of the five TLP 2.0 marking ids), not from the server's
policy code, so a disagreement between the two shows up as a failed check.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, not_, select

from benchmarks import data
from exchange.disclosure.models import Delivery, Disclosure
from exchange.intel.models import ObjectVersion

# TLP 2.0 marking definitions (DESIGN.md, "Sharing agreements") and the order of their levels.
TLP_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": data.TLP_GREEN,
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP_RANK = {level: i for i, level in enumerate(TLP_IDS)}  # clear 0 ... red 4
RANK_OF_ID = {marking: TLP_RANK[level] for level, marking in TLP_IDS.items()}

PARTNER_SLUG = "cert-bench"
MAX_TLP = "amber"
MIN_CONFIDENCE = 50
# The DESIGN.md example's type list: a realistic agreement names its types (one more predicate).
READ_TYPES = [
    "indicator",
    "malware",
    "vulnerability",
    "attack-pattern",
    "incident",
    "sighting",
    "relationship",
    "identity",
    "marking-definition",
    "report",
    "course-of-action",
]


@dataclass(frozen=True)
class Kind:
    """One kind of object in the mixed collection: its TLP level and confidence band."""

    name: str
    tlp: str
    confidence: str  # "high" (50-95, passes min_confidence), "low" (15-45), "none" (absent)
    share: int  # per 100 objects


# Exactly half visible (green, amber, clear with a high confidence); the other half withheld by
# the TLP ceiling, by min_confidence, by both, by red, or for want of a confidence (fail closed).
KINDS = (
    Kind("green, confidence >= 50", "green", "high", 30),
    Kind("amber, confidence >= 50", "amber", "high", 15),
    Kind("clear, confidence >= 50", "clear", "high", 5),
    Kind("amber+strict (TLP above ceiling)", "amber+strict", "high", 30),
    Kind("green, confidence < 50", "green", "low", 12),
    Kind("amber, confidence < 50", "amber", "low", 3),
    Kind("amber+strict, confidence < 50", "amber+strict", "low", 3),
    Kind("red", "red", "high", 1),
    Kind("green, no confidence", "green", "none", 1),
)
assert sum(k.share for k in KINDS) == 100


def rank_of(obj: dict[str, Any]) -> int:
    """The object's TLP rank: the most restrictive TLP marking it carries (bulk rows store it)."""
    return max(RANK_OF_ID[ref] for ref in obj["object_marking_refs"])


def partner_may_see(obj: dict[str, Any]) -> bool:
    """The harness's own reading of the agreement for these indicators."""
    confidence = obj.get("confidence")
    return (
        rank_of(obj) <= TLP_RANK[MAX_TLP]
        and obj["type"] in READ_TYPES
        and confidence is not None
        and confidence >= MIN_CONFIDENCE
    )


def shaped(obj: dict[str, Any], kind: Kind, rng: random.Random) -> dict[str, Any]:
    """`obj` re-marked and given the kind's confidence."""
    obj = dict(obj, object_marking_refs=[TLP_IDS[kind.tlp]])
    if kind.confidence == "high":
        obj["confidence"] = rng.randrange(MIN_CONFIDENCE, 100, 5)
    elif kind.confidence == "low":
        obj["confidence"] = rng.randrange(15, MIN_CONFIDENCE, 5)
    else:
        del obj["confidence"]
    return obj


def probes(seed: int) -> list[dict[str, Any]]:
    """One object of every kind, for the row shape check."""
    factory, rng = data.IndicatorFactory(seed=seed), random.Random(seed)
    return [shaped(factory.make(), kind, rng) for kind in KINDS]


@dataclass
class Mix:
    objects: list[dict[str, Any]]  # the mixed collection, in date_added order
    visible: list[dict[str, Any]]  # the ones the partner may see, same order
    kinds: Counter  # type: ignore[type-arg]


def mixed_collection(n: int, seed: int) -> Mix:
    """`n` indicators (n a multiple of 100), kinds shuffled, exactly n/2 visible to the partner."""
    if n % 100:
        raise ValueError("the mixed collection's size must be a multiple of 100")
    rng = random.Random(seed)
    order = [kind for kind in KINDS for _ in range(kind.share * n // 100)]
    rng.shuffle(order)
    factory = data.IndicatorFactory(seed=seed)
    objects = [shaped(factory.make(), kind, rng) for kind in order]
    visible = [obj for obj in objects if partner_may_see(obj)]
    if len(visible) != n // 2:
        raise AssertionError(f"the mix leaves {len(visible):,} of {n:,} visible, not half")
    return Mix(objects, visible, Counter(kind.name for kind in order))


@dataclass
class MixStream:
    """A mixed collection too large to hold: its objects come one at a time (the same objects
    `mixed_collection` would make for the same seed), and the ids the partner may see collect in
    `visible_ids` as they go by."""

    n: int
    seed: int
    visible_ids: set[str]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.n % 100:
            raise ValueError("the mixed collection's size must be a multiple of 100")
        rng = random.Random(self.seed)
        order = [index for index, kind in enumerate(KINDS) for _ in range(kind.share * self.n // 100)]
        rng.shuffle(order)
        factory = data.IndicatorFactory(seed=self.seed)
        for index in order:
            obj = shaped(factory.make(), KINDS[index], rng)
            if partner_may_see(obj):
                self.visible_ids.add(obj["id"])
            yield obj


def mixed_stream(n: int, seed: int) -> MixStream:
    """`n` indicators (a multiple of 100) made lazily, exactly n/2 of them visible to the partner."""
    return MixStream(n, seed, set())


def agreement(collections: list[str], *, now: datetime | None = None) -> dict[str, Any]:
    """An active agreement in force now (window from a month ago to a year ahead)."""
    today = (now or datetime.now(UTC)).date()
    return {
        "partner": PARTNER_SLUG,
        "title": "Benchmark partner: TLP ceiling amber, minimum confidence 50",
        "status": "active",
        "valid_from": (today - timedelta(days=30)).isoformat(),
        "valid_until": (today + timedelta(days=365)).isoformat(),
        "read": {
            "collections": collections,
            "max_tlp": MAX_TLP,
            "types": READ_TYPES,
            "min_confidence": MIN_CONFIDENCE,
        },
    }


@dataclass
class Ledger:
    rows: int
    by_collection: dict[int, int]
    distinct_versions: dict[int, int]
    not_allowed: int  # ledger rows for object versions the agreement withholds


def ledger(engine: Engine, collection_pks: list[int]) -> Ledger:
    """What the disclosure ledger holds, and whether any row records a withheld object."""
    ov, d = ObjectVersion, Disclosure
    allowed = and_(
        func.coalesce(ov.tlp_rank, TLP_RANK["amber"]) <= TLP_RANK[MAX_TLP],
        func.coalesce(ov.confidence, -1) >= MIN_CONFIDENCE,
        ov.type.in_(READ_TYPES),
    )
    v = Delivery
    with engine.connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(d))
        per = dict(
            conn.execute(
                select(v.collection_pk, func.count())
                .join(d, d.delivery_pk == v.pk)
                .where(v.collection_pk.in_(collection_pks))
                .group_by(v.collection_pk)
            ).all()
        )
        distinct = dict(
            conn.execute(
                select(v.collection_pk, func.count(d.object_version_pk.distinct()))
                .join(d, d.delivery_pk == v.pk)
                .where(v.collection_pk.in_(collection_pks))
                .group_by(v.collection_pk)
            ).all()
        )
        bad = conn.scalar(
            select(func.count()).select_from(d).join(ov, ov.pk == d.object_version_pk).where(not_(allowed))
        )
    return Ledger(rows or 0, per, distinct, bad or 0)
