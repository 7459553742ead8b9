"""The reciprocity report against counts the test makes itself: what it published, what each
partner pulled (with a real TAXII client) and what each partner submitted."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.cli import run
from tests.support.partners import agreement_doc
from tests.support.stix import AMBER, GREEN, indicator, publish
from tests.support.taxii import TAXII, post, pull

pytestmark = pytest.mark.live


@pytest.fixture
def scene(live_server, http, partners):  # type: ignore[no-untyped-def]
    """Two partners: `wide` reads green and amber and writes a submissions collection, `narrow`
    reads green only. Returns the figures the report must show, counted here."""
    shared = live_server.collection(default_tlp="green")
    inbox = live_server.collection(default_tlp="amber")
    greens = [indicator(marking=GREEN) for _ in range(5)]
    ambers = [indicator(marking=AMBER) for _ in range(3)]
    unmarked = [indicator(marking=GREEN) for _ in range(2)]
    for obj in unmarked:
        obj.pop("object_marking_refs")  # takes the collection's default level (green)
    publish(http, live_server.collection_url(shared), greens + ambers + unmarked)

    def wide_doc(slug: str) -> dict:  # type: ignore[type-arg]
        return agreement_doc(
            slug,
            read={"collections": [shared.alias], "max_tlp": "amber"},
            write={"collections": [inbox.alias], "types": ["indicator"]},
        )

    wide_slug, wide = partners.add(wide_doc)
    narrow_slug, narrow = partners.add(
        lambda s: agreement_doc(s, read={"collections": [shared.alias], "max_tlp": "green"})
    )
    got_wide = pull(live_server, wide, shared)
    got_wide_again = pull(live_server, wide, shared)  # a second pull: more deliveries, no more objects
    got_narrow = pull(live_server, narrow, shared)
    with httpx.Client(auth=wide, headers={"Accept": TAXII}, timeout=30) as client:
        mine = [indicator(marking=GREEN) for _ in range(4)] + [indicator(marking=AMBER)]
        status = post(client, live_server.collection_url(inbox), {"objects": mine}).json()
        assert status["success_count"] == len(mine), status
        again = post(client, live_server.collection_url(inbox), {"objects": mine}).json()
        assert again["success_count"] == len(mine), again  # exact duplicates: no new contribution
        refused = post(client, live_server.collection_url(shared), {"objects": [indicator(marking=GREEN)]})
        assert refused.status_code in (403, 404)  # not stored: not a contribution
        # Echoes: the CERT's own objects, pulled and posted back as they are. Stored (a copy
        # changes nothing), but not the partner's contribution.
        echoed = post(client, live_server.collection_url(inbox), {"objects": got_wide[:3]}).json()
        assert echoed["success_count"] == 3, echoed

    def levels(objs):  # type: ignore[no-untyped-def]
        return Counter("amber" if AMBER in o.get("object_marking_refs", []) else "green" for o in objs)

    return {
        "shared": shared,
        "inbox": inbox,
        "wide": (wide_slug, wide),
        "narrow": (narrow_slug, narrow),
        "wide_received": levels(got_wide),
        "wide_deliveries": len(got_wide) + len(got_wide_again),
        "narrow_received": levels(got_narrow),
        "wide_contributed": levels(mine),
    }


def _by_partner(report: dict) -> dict:  # type: ignore[type-arg]
    return {p["partner"]: p for p in report["partners"]}


def test_figures_match_what_was_published_pulled_and_submitted(live_server, http, scene, backend):
    wide_slug, narrow_slug = scene["wide"][0], scene["narrow"][0]
    shared, inbox = scene["shared"].alias, scene["inbox"].alias
    assert scene["wide_received"] == {"green": 7, "amber": 3}
    assert scene["narrow_received"] == {"green": 7}
    answer = http.get(f"{live_server.url}/api/v1/reports/reciprocity")
    assert answer.status_code == 200, answer.text
    parts = _by_partner(answer.json())
    wide, narrow = parts[wide_slug], parts[narrow_slug]
    assert wide["received"] == sum(scene["wide_received"].values())
    assert wide["deliveries"] == scene["wide_deliveries"]
    assert wide["contributed"] == sum(scene["wide_contributed"].values())
    assert wide["ratio"] == pytest.approx(wide["contributed"] / wide["received"], abs=1e-3)
    cells = {(c["collection"], c["tlp"]): c for c in wide["cells"]}
    assert {k: c["received"] for k, c in cells.items() if c["received"]} == {
        (shared, level): n for level, n in scene["wide_received"].items()
    }
    assert {k: c["contributed"] for k, c in cells.items() if c["contributed"]} == {
        (inbox, level): n for level, n in scene["wide_contributed"].items()
    }
    assert narrow["received"] == 7 and narrow["contributed"] == 0 and narrow["ratio"] == 0
    assert [(c["collection"], c["tlp"], c["received"]) for c in narrow["cells"]] == [(shared, "green", 7)]

    # A window that ends before any of it happened holds none of it.
    before = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    old = _by_partner(http.get(f"{live_server.url}/api/v1/reports/reciprocity?until={before}").json())
    assert old[wide_slug]["received"] == 0 and old[wide_slug]["contributed"] == 0
    assert old[wide_slug]["cells"] == []
    today = datetime.now(UTC).date().isoformat()
    same = _by_partner(
        http.get(
            f"{live_server.url}/api/v1/reports/reciprocity", params={"since": today, "until": today}
        ).json()
    )
    assert same[wide_slug]["received"] == wide["received"]


def test_the_cli_prints_the_same_figures_as_csv_and_json(live_server, http, scene, cli_env):
    wide_slug = scene["wide"][0]
    result = run(cli_env, "report", "reciprocity", "--csv")
    assert result.returncode == 0, result.stderr
    rows = [r for r in csv.DictReader(io.StringIO(result.stdout)) if r["partner"] == wide_slug]
    received = {r["tlp"]: int(r["received"]) for r in rows if r["collection"] == scene["shared"].alias}
    contributed = {r["tlp"]: int(r["contributed"]) for r in rows if r["collection"] == scene["inbox"].alias}
    assert received == dict(scene["wide_received"])
    assert contributed == dict(scene["wide_contributed"])
    result = run(cli_env, "report", "reciprocity", "--json", "--since", "2020-01-01")
    assert result.returncode == 0, result.stderr
    wide = _by_partner(json.loads(result.stdout))[wide_slug]
    assert wide["received"] == 10 and wide["contributed"] == 5
    text = run(cli_env, "report", "reciprocity")
    assert text.returncode == 0 and wide_slug in text.stdout
    bad = run(cli_env, "report", "reciprocity", "--since", "2026-13-01")
    assert bad.returncode == 1 and "since" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-02-30"}, "until"),
        ({"since": "2026-11-01T10:00:00"}, "time zone"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "after"),
        ({"since": "1900-01-01", "until": "2026-01-01"}, "shorter"),
        ({"since": "2026-11-01T10:00:00+99:00"}, "since"),
        ({"since": "\x00"}, "since"),
        ({"until": "9999-12-31"}, "out of range"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"since": "9999-12-31T23:59:59-01:00"}, "since"),
    ],
)
def test_bad_windows_are_a_clear_400(live_server, http, query, field):
    answer = http.get(f"{live_server.url}/api/v1/reports/reciprocity", params=query)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in answer.json()["detail"]


def test_only_staff_read_the_reports(live_server, partners):
    _, partner = partners.add(
        lambda s: agreement_doc(s, read={"collections": ["indicators"], "max_tlp": "green"})
    )
    analyst = live_server.credential("analyst")
    for path in ("/api/v1/reports/reciprocity", "/api/v1/reports/dashboard"):
        assert httpx.get(live_server.url + path).status_code == 401
        assert httpx.get(live_server.url + path, auth=partner).status_code == 403
        assert httpx.get(live_server.url + path, auth=("nobody", "wrong")).status_code == 401
        assert httpx.get(live_server.url + path, auth=analyst).status_code == 200
