"""Two exchanges, `bd` and `in`, peering both ways on loopback: every page verified.

One pair of servers for the whole module (each test publishes its own objects and checks what
changed). bd pulls in through a TLS proxy that can change one byte of a page or replay an old
one; in pulls bd the same way.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.peer.exchanges import STAMP, TAXII, Exchange, start_pair
from tests.support.cli import run_process

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Exchange, Exchange]]:
    bd, in_ = start_pair(tmp_path_factory.mktemp("peers"))
    yield bd, in_
    bd.stop()
    in_.stop()


def ids(objects: list[dict]) -> list[str]:  # type: ignore[type-arg]
    return [o["id"] for o in objects]


def test_objects_published_on_each_side_reach_the_other_once_verified(
    pair: tuple[Exchange, Exchange],
) -> None:
    bd, in_ = pair
    from_bd, from_in = bd.publish(3), in_.publish(3)

    bd_run, in_run = bd.pull(), in_.pull()
    assert bd_run["status"] == "ok", bd_run
    assert in_run["status"] == "ok", in_run

    at_bd, at_in = ids(bd.objects("partner-submissions")), ids(in_.objects("partner-submissions"))
    for obj in from_in:
        assert at_bd.count(obj["id"]) == 1
    for obj in from_bd:
        assert at_in.count(obj["id"]) == 1
    # What was stored came through signed pages, each signed for the puller.
    assert in_.proxy is not None and in_.proxy.controls.pages
    assert all(b'"x_exchange_jws":' in page for page in in_.proxy.controls.pages)

    again = bd.pull(), in_.pull()
    assert [r["new"] for r in again] == [0, 0]
    assert ids(bd.objects("partner-submissions")) == at_bd
    assert ids(in_.objects("partner-submissions")) == at_in

    # in named bd's API root: it pulls every collection its agreement at bd lets it read.
    assert len(in_.feeds) == 2
    listed = json.loads(bd.ok("peer", "list", "--json").stdout)
    assert [p["slug"] for p in listed] == ["cert-in"]
    assert listed[0]["our_name"] == "cert-bd" and listed[0]["kids"]
    # The key bd pulls in with never shows, whatever an administrator lists.
    secret = bd.peer_key.split(".", 1)[1]
    for args in (
        ("peer", "list"),
        ("feed", "list", "--json"),
        ("feed", "runs", bd.feeds[0]),
        ("audit", "list"),
    ):
        assert secret not in bd.ok(*args).stdout, args


def test_a_page_with_one_byte_changed_fails_the_run_and_stores_nothing(
    pair: tuple[Exchange, Exchange],
) -> None:
    bd, in_ = pair
    bd.pull()  # up to date first
    before, cursor = ids(bd.objects("partner-submissions")), bd.cursor()
    sent = in_.publish(2)
    assert in_.proxy is not None
    in_.proxy.controls.tamper_next = True

    run = bd.pull()

    assert in_.proxy.controls.tampered == 1
    assert run["status"] == "failed"
    assert "bad signature" in run["error"] and "nothing of it stored" in run["error"]
    assert ids(bd.objects("partner-submissions")) == before
    assert bd.cursor() == cursor
    runs = json.loads(bd.ok("feed", "runs", bd.feeds[0], "--json").stdout)
    assert runs[0]["status"] == "failed" and "bad signature" in runs[0]["error"]

    clean = bd.pull()
    assert clean["status"] == "ok" and clean["new"] == 2, clean
    assert {o["id"] for o in sent} <= set(ids(bd.objects("partner-submissions")))


def test_a_bad_second_page_keeps_the_first_and_the_resume_point_after_it(
    pair: tuple[Exchange, Exchange],
) -> None:
    bd, in_ = pair
    assert in_.proxy is not None
    bd.pull()
    sent = in_.publish(3)  # two pages of two at most: the second holds the third
    in_.proxy.controls.tamper_next, in_.proxy.controls.tamper_after = True, 1

    run = bd.pull()

    assert run["status"] == "failed" and "page 2" in run["error"] and "bad signature" in run["error"], run
    held = set(ids(bd.objects("partner-submissions")))
    assert {o["id"] for o in sent[:2]} <= held and sent[2]["id"] not in held
    resumed = bd.pull()
    assert resumed["status"] == "ok" and resumed["new"] == 1 and resumed["fetched"] == 1, resumed
    assert sent[2]["id"] in set(ids(bd.objects("partner-submissions")))


def test_a_resume_point_in_the_future_and_a_suspended_peer_are_refused(
    pair: tuple[Exchange, Exchange],
) -> None:
    bd, in_ = pair
    assert in_.proxy is not None
    bd.pull()
    cursor = bd.cursor()
    in_.publish(1)
    in_.proxy.controls.date_added_last = "2099-01-01T00:00:00.000000Z"
    run = bd.pull()
    assert run["status"] == "failed" and "in the future" in run["error"], run
    assert bd.cursor() == cursor

    bd.ok("partner", "suspend", "cert-in")
    try:
        suspended = bd.pull()
        assert suspended["status"] == "failed" and "suspended" in suspended["error"], suspended
    finally:
        bd.ok("partner", "activate", "cert-in")
    assert bd.pull()["new"] == 1


def test_rotation_is_followed_and_a_removed_key_is_no_longer_trusted(
    pair: tuple[Exchange, Exchange], tmp_path: Path
) -> None:
    bd, in_ = pair
    assert in_.proxy is not None
    in_.publish(1)
    assert bd.pull()["status"] == "ok"
    old_page = in_.proxy.controls.pages[-1]
    keys = json.loads(in_.ok("signing-key", "jwks").stdout)["keys"]
    first, pre_published = keys[0]["kid"], keys[1]["kid"]
    assert pre_published in json.loads(bd.ok("peer", "keys", "cert-in", "--json").stdout)["kids"]
    export = tmp_path / "old-export.json"
    in_.ok("export", "indicators", "--partner", "cert-bd", "-o", str(export))

    # in rotates to the key it pre-published: bd already trusts it.
    rotated = json.loads(in_.ok("signing-key", "rotate", "--json").stdout)
    assert rotated["current"] == pre_published
    sent = in_.publish(1)
    run = bd.pull()
    assert run["status"] == "ok" and run["new"] == 1, run
    assert sent[0]["id"] in ids(bd.objects("partner-submissions"))

    # Rotating again makes current a key bd never fetched: one refetch picks it up.
    second = json.loads(in_.ok("signing-key", "rotate", "--json").stdout)
    assert second["current"] not in json.loads(bd.ok("peer", "keys", "cert-in", "--json").stdout)["kids"]
    in_.publish(1)
    run = bd.pull()
    assert run["status"] == "ok" and run["new"] == 1, run
    assert second["current"] in json.loads(bd.ok("peer", "keys", "cert-in", "--json").stdout)["kids"]

    # The first key, still published as retired, still verifies its old export ...
    imported = bd.cli("import", str(export), "--peer", "cert-in", "--json")
    assert imported.returncode == 0, imported.stdout + imported.stderr

    # ... until in removes it: then pages and exports signed with it are refused.
    in_.ok("signing-key", "remove", "--", first)
    kids = json.loads(bd.ok("peer", "keys", "cert-in", "--refresh", "--json").stdout)["kids"]
    assert first not in kids
    before, cursor = ids(bd.objects("partner-submissions")), bd.cursor()
    in_.proxy.controls.replay_next = old_page
    replayed = bd.pull()
    assert replayed["status"] == "failed"
    assert "unknown kid" in replayed["error"], replayed
    assert ids(bd.objects("partner-submissions")) == before and bd.cursor() == cursor
    refused = bd.cli("import", str(export), "--peer", "cert-in")
    assert refused.returncode == 1 and "unknown kid" in refused.stdout


def test_import_of_a_peer_export_verifies_and_stores_nothing_when_it_fails(
    pair: tuple[Exchange, Exchange], tmp_path: Path
) -> None:
    bd, in_ = pair
    sent = in_.publish(2)
    export = tmp_path / "in-export.json"
    in_.ok("export", "indicators", "--partner", "cert-bd", "-o", str(export))
    before = ids(bd.objects("partner-submissions"))

    # One byte changed in the bundle: refused, nothing stored.
    tampered = tmp_path / "tampered.json"
    body = export.read_bytes()
    at = body.index(sent[0]["id"].encode()) + len("indicator--")
    tampered.write_bytes(body[:at] + (b"1" if body[at : at + 1] != b"1" else b"2") + body[at + 1 :])
    refused = bd.cli("import", str(tampered), "--peer", "cert-in")
    assert (
        refused.returncode == 1
        and "bad signature" in refused.stdout
        and "nothing was imported" in refused.stdout
    )
    # An export in made for another partner is not for us.
    assert ids(bd.objects("partner-submissions")) == before
    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps({k: v for k, v in json.loads(body).items() if k != "x_exchange_jws"}))
    not_signed = bd.cli("import", str(unsigned), "--peer", "cert-in")
    assert not_signed.returncode == 1 and "not signed" in not_signed.stdout
    # bd's own export (signed by bd, not in) does not pass as in's.
    own = tmp_path / "own.json"
    bd.ok("export", "indicators", "--partner", "cert-in", "-o", str(own))
    foreign = bd.cli("import", str(own), "--peer", "cert-in")
    assert foreign.returncode == 1 and "unknown kid" in foreign.stdout
    assert ids(bd.objects("partner-submissions")) == before

    good = bd.cli("import", str(export), "--peer", "cert-in", "--json")
    assert good.returncode == 0, good.stdout + good.stderr
    after = ids(bd.objects("partner-submissions"))
    assert {o["id"] for o in sent} <= set(after)
    # Imported, they are cert-in's: the chain says so, and none of them is served back to it.
    chain = httpx.get(f"{bd.url}/api/v1/objects/{sent[0]['id']}", auth=bd.admin, timeout=30).json()
    assert chain["came_from"] == {"origin": "peer", "partner": "cert-in"}, chain
    assert bd.proxy is not None
    before = len(bd.proxy.controls.pages)
    assert in_.pull()["status"] == "ok"
    served = b"".join(bd.proxy.controls.pages[before:])
    assert not [o["id"] for o in sent if o["id"].encode() in served]


def test_a_peer_push_is_verified_with_the_key_set_it_publishes(
    pair: tuple[Exchange, Exchange], tmp_path: Path
) -> None:
    bd, in_ = pair
    assert bd.inbox is not None
    # bd registered no key for cert-in: its pushes verify against the key set cert-in publishes.
    bd.agree("cert-in", tmp_path, require_signature=True)
    in_.push_to(bd, tmp_path)
    try:
        sent = in_.publish(1)
        pushed = in_.cli("push", "run", "cert-bd")
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        assert sent[0]["id"] in ids(bd.objects("partner-submissions"))

        before = ids(bd.objects("partner-submissions"))
        bd.inbox.controls.tamper_post = True
        changed = in_.publish(1)
        in_.cli("push", "run", "cert-bd")
        assert bd.inbox.controls.tampered == 1
        after = ids(bd.objects("partner-submissions"))
        assert changed[0]["id"] not in after
        assert len(after) == len(before)  # nor the altered copy
    finally:
        bd.agree("cert-in", tmp_path)
        in_.agree("cert-bd", tmp_path)


# --- originator control between two exchanges (with the origin branch) -------------------------


def _third_partner(bd: Exchange, slug: str, tmp: Path) -> tuple[str, str]:
    """A plain partner of bd that pulls bd's collections with a TAXII client of its own."""
    added = json.loads(
        bd.ok(
            "partner",
            "add",
            slug,
            "--name",
            slug,
            "--country",
            "LK",
            "--identity",
            f"identity--{uuid.uuid4()}",
            "--json",
        ).stdout
    )
    bd.agree(slug, tmp)
    return added["credential_id"], added["key"]


def _pulled(bd: Exchange, credential: tuple[str, str], collection: str) -> set[str]:
    """Every id a partner of bd reads in `collection`, page by page."""
    found: set[str] = set()
    params = {"limit": "1000"}
    while True:
        answer = httpx.get(
            f"{bd.url}/taxii2/root/collections/{collection}/objects/",
            params=params,
            auth=credential,
            headers={"Accept": TAXII},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        envelope = answer.json()
        found |= {o["id"] for o in envelope.get("objects", [])}
        if not envelope.get("more"):
            return found
        params = {"limit": "1000", "next": envelope["next"]}


def test_objects_from_in_never_come_back_to_in_through_pull_push_or_export(
    pair: tuple[Exchange, Exchange], tmp_path: Path
) -> None:
    bd, in_ = pair
    assert bd.proxy is not None and in_.inbox is not None
    sent = in_.publish(2)
    assert bd.pull()["status"] == "ok"
    bd.post([sent[0]], "indicators")  # bd's analyst files a copy in its own collection: still in's
    own = bd.publish(1)

    before = len(bd.proxy.controls.pages)
    assert in_.pull()["status"] == "ok"
    served = b"".join(bd.proxy.controls.pages[before:])
    assert own[0]["id"].encode() in served
    assert not [o["id"] for o in sent if o["id"].encode() in served]

    for collection in ("indicators", "partner-submissions"):
        out = tmp_path / f"{collection}.json"
        bd.ok("export", collection, "--partner", "cert-in", "-o", str(out))
        exported = {o["id"] for o in json.loads(out.read_text()).get("objects", [])}
        assert not exported & {o["id"] for o in sent}, collection

    bd.push_to(in_, tmp_path)
    fresh = bd.publish(1)
    posts = len(in_.inbox.controls.posts)
    bd.ok("push", "run", "cert-in")
    pushed = b"".join(in_.inbox.controls.posts[posts:])
    assert fresh[0]["id"].encode() in pushed
    assert not [o["id"] for o in sent if o["id"].encode() in pushed]


def test_relay_to_a_third_partner_follows_relay_to_exactly(
    pair: tuple[Exchange, Exchange], tmp_path: Path
) -> None:
    bd, in_ = pair
    lk = _third_partner(bd, "cert-lk", tmp_path)
    _third_partner(bd, "cert-mv", tmp_path)
    sent = in_.publish(1)
    assert bd.pull()["status"] == "ok"
    mine = sent[0]["id"]
    try:
        assert mine not in _pulled(bd, lk, "partner-submissions")  # relay_to: none, the default
        bd.agree("cert-in", tmp_path, relay_to=["cert-lk"])
        assert mine in _pulled(bd, lk, "partner-submissions")
        bd.agree("cert-in", tmp_path, relay_to=["cert-mv"])
        assert mine not in _pulled(bd, lk, "partner-submissions")
        bd.agree("cert-in", tmp_path, relay_to="all")
        assert mine in _pulled(bd, lk, "partner-submissions")
        # "all" never includes the originator itself.
        before = len(bd.proxy.controls.pages)  # type: ignore[union-attr]
        in_.pull()
        assert mine.encode() not in b"".join(bd.proxy.controls.pages[before:])  # type: ignore[union-attr]
    finally:
        bd.agree("cert-in", tmp_path)


def test_a_sighting_made_at_bd_of_an_in_indicator_reaches_in(pair: tuple[Exchange, Exchange]) -> None:
    bd, in_ = pair
    sent = in_.publish(1)
    assert bd.pull()["status"] == "ok"
    sighting = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": f"sighting--{uuid.uuid4()}",
        "created": STAMP,
        "modified": STAMP,
        "sighting_of_ref": sent[0]["id"],
        "count": 4,
        "first_seen": STAMP,
    }
    bd.post([sighting], "indicators")
    run = in_.pull()
    assert run["status"] == "ok", run
    assert sighting["id"] in ids(in_.objects("partner-submissions"))


def test_both_directions_at_once_with_no_echo_and_no_duplicates(
    pair: tuple[Exchange, Exchange], tmp_path: Path
) -> None:
    bd, in_ = pair
    bd.push_to(in_, tmp_path)
    in_.push_to(bd, tmp_path)
    from_bd, from_in = bd.publish(3), in_.publish(3)
    commands = [(side, ("feed", "run", name)) for side in (bd, in_) for name in side.feeds] + [
        (bd, ("push", "run", "cert-in")),
        (in_, ("push", "run", "cert-bd")),
    ]
    # Everything at once, each command its own process; then once more in turn: nothing new bounces.
    with ThreadPoolExecutor(len(commands)) as pool:
        done = list(pool.map(lambda c: run_process(c[0].env, *c[1]), commands))
    assert all(r.returncode == 0 for r in done), [r.stdout + r.stderr for r in done]
    for side, args in commands:
        side.ok(*args)

    for here, own, theirs in ((bd, from_bd, from_in), (in_, from_in, from_bd)):
        stored = here.objects("partner-submissions")
        versions = [(o["id"], o.get("modified")) for o in stored]
        assert len(versions) == len(set(versions)), f"duplicates at {here.name}"
        held = {o["id"] for o in stored}
        assert {o["id"] for o in theirs} <= held, here.name
        assert not held & {o["id"] for o in own}, f"echo at {here.name}"
