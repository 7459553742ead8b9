"""The audit trail: hash-chained, tamper-evident, free of secrets, and fed by what users do."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.audit.models import AuditEvent, AuditHead
from exchange.auth import service as auth_service
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.database.types import utcnow
from exchange.errors import ConflictError
from exchange.main import create_app
from tests.support import cli
from tests.support.partners import agreement_doc
from tests.support.stix import envelope, indicator
from tests.support.taxii import TAXII, free_port, post, start_uvicorn

COLUMNS = ("seq", "at", "actor", "action", "target", "details", "prev_hash", "hash")


def chain(db: Session, n: int = 5) -> list[int]:
    """Append `n` events; returns their seq numbers. Everything is rolled back after the test."""
    seqs = [
        audit.record(db, actor="tester", action="test.event", target=f"t{i}", details={"i": i}).seq
        for i in range(n)
    ]
    db.expire_all()  # read back from the database from now on, as a later `verify` would
    return seqs


def names(problems: list[str], seq: int) -> bool:
    return any(re.search(rf"\b{seq}\b", problem) for problem in problems)


def tampered(db: Session, change: Callable[[], Any]) -> audit.ChainReport:
    """verify() after `change`, which is undone afterwards."""
    nested = db.begin_nested()
    try:
        change()
        db.expire_all()
        return audit.verify(db)
    finally:
        nested.rollback()
        db.expire_all()


def test_an_untouched_chain_verifies(db):
    seqs = chain(db)
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    report = audit.verify(db)
    assert report.ok, report.problems
    assert report.events >= 5
    newest = audit.list_(db, limit=5)
    assert [e.seq for e in newest] == seqs[::-1]
    assert newest[0].prev_hash == newest[1].hash


def _new_value(column: str, event: AuditEvent) -> Any:
    return {
        "seq": event.seq + 1_000_000,
        "at": event.at + timedelta(microseconds=1),
        "actor": event.actor + "x",
        "action": "test.other",
        "target": event.target + "x",
        "details": '{"i":-1}',
        "prev_hash": "f" * 64,
        "hash": "0" * 64,
    }[column]


@pytest.mark.parametrize("column", COLUMNS)
def test_editing_any_column_of_any_event_is_detected_and_named(db, column):
    seqs = chain(db)
    first = db.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).first()
    for seq in (first, seqs[2], seqs[-1]):  # the oldest event there is, one in the middle, the newest
        event = db.get(AuditEvent, seq)
        value = _new_value(column, event)

        def edit(seq: int = seq, value: object = value) -> None:
            db.execute(update(AuditEvent).where(AuditEvent.seq == seq).values({column: value}))

        report = tampered(db, edit)
        assert not report.ok, f"editing {column} of event {seq} went unnoticed"
        shown = value if column == "seq" else seq
        assert names(report.problems, shown), (column, seq, report.problems)
    assert audit.verify(db).ok


def test_deleting_a_middle_event_is_detected(db):
    seqs = chain(db)
    middle = seqs[2]
    report = tampered(db, lambda: db.execute(delete(AuditEvent).where(AuditEvent.seq == middle)))
    assert not report.ok
    assert f"events {middle}..{middle} are missing" in report.problems
    assert names(report.problems, middle + 1)


@pytest.mark.parametrize("how_many", [1, 3])
def test_deleting_the_newest_events_is_detected(db, how_many):
    seqs = chain(db)
    gone = seqs[-how_many:]
    report = tampered(db, lambda: db.execute(delete(AuditEvent).where(AuditEvent.seq.in_(gone))))
    assert not report.ok
    assert any("events were removed" in p and names([p], seqs[-1]) for p in report.problems), report.problems


def test_deleting_the_newest_events_and_the_head_is_detected(db):
    seqs = chain(db)

    def truncate() -> None:
        db.execute(delete(AuditEvent).where(AuditEvent.seq == seqs[-1]))
        db.execute(delete(AuditHead))

    report = tampered(db, truncate)
    assert not report.ok, "the newest event and the head row were deleted and verify() reported nothing"
    assert any("head" in problem for problem in report.problems), report.problems


# --- someone with database access, without the signing key -------------------------------------


def _rechain(db: Session, start: int) -> None:
    """Recompute every hash from event `start` on and point the head at the end: what an attacker
    who knows the (public) hashing scheme does after an edit."""
    events = list(db.scalars(select(AuditEvent).where(AuditEvent.seq >= start).order_by(AuditEvent.seq)))
    prev = db.get(AuditEvent, start - 1).hash if start > 1 else audit.GENESIS
    for event in events:
        event.prev_hash = prev
        event.hash = audit._digest(prev, event)
        prev = event.hash
    db.flush()
    db.execute(update(AuditHead).values(seq=events[-1].seq, hash=prev))


def test_cutting_off_the_newest_events_and_moving_the_head_back_is_detected(db):
    seqs = chain(db)
    keep = db.get(AuditEvent, seqs[1])

    def cut() -> None:
        db.execute(delete(AuditEvent).where(AuditEvent.seq > keep.seq))
        db.execute(update(AuditHead).values(seq=keep.seq, hash=keep.hash))

    report = tampered(db, cut)
    assert not report.ok, "the newest events were cut off and verify() reported nothing"
    assert any("head" in p and "signature" in p for p in report.problems), report.problems

    def cut_and_reuse_an_event_signature() -> None:
        cut()
        db.execute(update(AuditHead).values(signature=keep.signature))

    report = tampered(db, cut_and_reuse_an_event_signature)
    assert not report.ok, "an event's signature passed for the head's"


def test_a_rollback_to_a_kept_head_is_caught_by_a_later_checkpoint(db):
    seqs = chain(db, 3)
    kept = db.get(AuditHead, 1)
    old_head = {"seq": kept.seq, "hash": kept.hash, "signature": kept.signature}
    chain(db, 3)
    checkpoint = audit.export_checkpoint(db, issuer="identity--test")
    assert audit.verify(db, checkpoints=[("cp.json", checkpoint)]).ok

    def roll_back() -> None:
        db.execute(delete(AuditEvent).where(AuditEvent.seq > seqs[-1]))
        db.execute(update(AuditHead).values(**old_head))

    # Without a checkpoint this rollback cannot be seen, and verify says so.
    report = tampered(db, roll_back)
    assert report.ok, report.problems
    assert any("no events at the end of the trail were removed" in line for line in report.cannot_prove)
    nested = db.begin_nested()
    try:
        roll_back()
        db.expire_all()
        report = audit.verify(db, checkpoints=[("cp.json", checkpoint)])
    finally:
        nested.rollback()
        db.expire_all()
    assert not report.ok
    assert (
        f"cp.json (taken {audit.utc_text(checkpoint['iat'])}) names event {checkpoint['seq']}, which is missing"
        in report.problems[0]
    )


def test_deleting_every_event_and_the_head_is_detected(db):
    chain(db)
    checkpoint = audit.export_checkpoint(db)

    def wipe() -> None:
        db.execute(delete(AuditEvent))
        db.execute(delete(AuditHead))

    report = tampered(db, wipe)
    assert not report.ok, "the whole trail was deleted and verify() reported nothing"
    assert any("every event was deleted" in p for p in report.problems), report.problems
    nested = db.begin_nested()
    try:
        wipe()
        db.expire_all()
        report = audit.verify(db, checkpoints=[("cp", checkpoint)])
    finally:
        nested.rollback()
        db.expire_all()
    assert any("which is missing" in p for p in report.problems), report.problems


def test_editing_an_event_and_recomputing_the_chain_is_detected(db):
    seqs = chain(db)

    def rewrite() -> None:
        db.execute(update(AuditEvent).where(AuditEvent.seq == seqs[2]).values(actor="someone-else"))
        db.expire_all()
        _rechain(db, seqs[2])

    report = tampered(db, rewrite)
    assert not report.ok, "an edited event with a recomputed chain went unnoticed"
    assert any(f"event {seqs[2]} has a signature that does not match" in p for p in report.problems)


def test_a_forged_event_with_a_valid_hash_is_detected_even_after_later_events(db):
    chain(db)
    head = db.get(AuditHead, 1)

    def forge() -> None:
        forged = AuditEvent(
            seq=head.seq + 1,
            at=utcnow(),
            actor="admin",
            action="user.create",
            target="cred-forged",
            details="{}",
            prev_hash=head.hash,
            hash="",
            signature=head.signature,  # the best signature at hand
        )
        forged.hash = audit._digest(head.hash, forged)
        db.add(forged)
        db.flush()
        db.execute(update(AuditHead).values(seq=forged.seq, hash=forged.hash))

    report = tampered(db, forge)
    assert not report.ok, "a forged event with a valid hash went unnoticed"
    assert any(f"event {head.seq + 1}" in p for p in report.problems), report.problems

    def forge_then_work_on() -> None:
        forge()
        db.expire_all()
        audit.record(db, actor="tester", action="test.after", target="t")  # signs the head again

    report = tampered(db, forge_then_work_on)
    assert not report.ok, "a forged event passed once a genuine event was appended after it"
    assert any(f"event {head.seq + 1} has a signature of another kind" in p for p in report.problems)


def test_a_checkpoint_cannot_be_forged_or_taken_of_a_tampered_trail(db):
    chain(db, 2)
    checkpoint = audit.export_checkpoint(db)
    for forged in (checkpoint | {"seq": checkpoint["seq"] - 1}, checkpoint | {"iat": checkpoint["iat"] + 1}):
        report = audit.verify(db, checkpoints=[("forged", forged)])
        assert not report.ok and "does not match" in report.problems[0], report.problems
    head = db.get(AuditHead, 1)
    nested = db.begin_nested()
    try:
        db.execute(update(AuditHead).values(signature=None))
        db.expire_all()
        with pytest.raises(ConflictError, match="does not verify"):
            audit.export_checkpoint(db)
    finally:
        nested.rollback()
        db.expire_all()
    assert head.seq == checkpoint["seq"]


def test_secrets_in_details_are_withheld(db):
    event = audit.record(
        db,
        actor="tester",
        action="test.secret",
        details={
            "key": "k-1",
            "password": "p-1",
            "client_secret": "s-1",
            "API_TOKEN": "t-1",
            "SigningKey": "k-2",
            "nested": {"token": "t-2", "fine": "visible-1"},
            "name": "visible-2",
            "key_id": "visible-3",
        },
    )
    db.expire_all()
    stored = json.loads(db.get(AuditEvent, event.seq).details)
    for name in ("key", "password", "client_secret", "API_TOKEN", "SigningKey"):
        assert stored[name] == "[withheld]", name
    assert stored["nested"] == {"token": "[withheld]", "fine": "visible-1"}
    assert (stored["name"], stored["key_id"]) == ("visible-2", "visible-3")
    for secret in ("k-1", "p-1", "s-1", "t-1", "k-2", "t-2"):
        assert secret not in db.get(AuditEvent, event.seq).details
    assert audit.verify(db).ok


def test_secrets_inside_lists_are_withheld(db):
    event = audit.record(
        db,
        actor="tester",
        action="test.secret",
        details={"credentials": [{"id": "c-1", "key": "k-3"}], "feeds": [{"token": "t-3"}]},
    )
    db.expire_all()
    stored = db.get(AuditEvent, event.seq).details
    assert "k-3" not in stored and "t-3" not in stored, stored


# --- what users do ends up in the trail (real server) ---------------------------------------


def rest(live_server, key: str | None) -> httpx.Client:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=f"{live_server.url}/api/v1", headers=headers, timeout=30)


def find_event(live_server, admin, action: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The newest `action` event that `match`es, read over REST (waiting briefly for the commit)."""
    deadline = time.monotonic() + 5
    with rest(live_server, admin[1]) as client:
        while True:
            response = client.get("/audit", params={"action": action, "limit": 200})
            assert response.status_code == 200, response.text
            found = [e for e in response.json() if match(e)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no {action} event matching"
            time.sleep(0.02)


@pytest.mark.live
def test_failed_logins_are_audited(live_server, admin):
    taxii_user = live_server.credential("analyst")[0]
    response = httpx.get(
        f"{live_server.api_root}collections/", auth=(taxii_user, "wrong"), headers={"Accept": TAXII}
    )
    assert response.status_code == 401
    event = find_event(live_server, admin, "login.failure", lambda e: e["actor"] == taxii_user)
    assert event["details"] == {"channel": "taxii"}

    rest_user = live_server.credential("analyst")[0]
    with rest(live_server, f"{rest_user}.wrong-key") as client:
        assert client.get("/partners").status_code == 401
    event = find_event(live_server, admin, "login.failure", lambda e: e["actor"] == rest_user)
    assert event["details"] == {"channel": "rest"}
    assert "wrong-key" not in json.dumps(event)


@pytest.mark.live
def test_a_failed_login_on_a_write_request_is_answered_at_once_and_audited(live_server, backend, tmp_path):
    if backend == "sqlite":
        # Its own server and database: when this fails, a request is stuck holding the SQLite
        # write lock for the 30 s busy timeout, which must not hold up the other tests.
        settings = Settings(data_dir=tmp_path / "data", secret_key="test-secret-" + "x" * 40)
        settings.ensure_data_dir()
        engine = make_engine(settings.sqlalchemy_url)
        migrate(engine)
        with session_scope(make_session_factory(engine), write=True) as db:
            initialise(db, settings)
        port = free_port()
        start_uvicorn(create_app(settings), port)
        url = f"http://127.0.0.1:{port}"
    else:
        engine, url = live_server.engine, live_server.url
    with session_scope(make_session_factory(engine), write=True) as db:
        who = auth_service.create_credential(db, name="tried", role="analyst")[0].id
    try:
        response = httpx.post(
            f"{url}/api/v1/partners",
            json={"slug": "p-never", "name": "x", "country": "IN"},
            headers={"Authorization": f"Bearer {who}.wrong"},
            timeout=2,
        )
    except httpx.TimeoutException:
        pytest.fail("a wrong key on a POST got no answer within 2 s")
    assert response.status_code == 401, response.text
    with session_scope(make_session_factory(engine)) as db:
        actors = [e.actor for e in audit.list_(db, limit=50, action="login.failure")]
    assert who in actors


@pytest.mark.live
def test_agreement_changes_and_taxii_writes_are_audited(live_server, admin):
    coll = live_server.collection()
    slug = f"p-{uuid.uuid4().hex[:8]}"
    with rest(live_server, admin[1]) as client:
        created = client.post("/partners", json={"slug": slug, "name": "P", "country": "IN"})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        find_event(live_server, admin, "partner.create", lambda e: e["target"] == slug)
        doc = agreement_doc(
            slug,
            read={"collections": [coll.alias], "max_tlp": "green"},
            write={"collections": [coll.alias], "types": ["indicator"]},
        )
        assert client.put("/agreements", json=doc).status_code == 200
        find_event(live_server, admin, "agreement.apply", lambda e: e["target"] == slug)
        assert (
            client.put("/agreements", json=doc | {"read": doc["read"] | {"max_tlp": "amber"}}).json()[
                "version"
            ]
            == 2
        )

    event = find_event(
        live_server, admin, "agreement.apply", lambda e: e["target"] == slug and e["details"]["version"] == 2
    )
    assert event["actor"] == admin[0]
    assert event["details"]["changes"] == [{"path": "read.max_tlp", "old": "green", "new": "amber"}]

    malware = {
        "type": "malware",
        "spec_version": "2.1",
        "id": f"malware--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": "m",
        "is_family": False,
    }
    with httpx.Client(auth=(created.json()["credential_id"], key), headers={"Accept": TAXII}) as partner:
        status = post(partner, live_server.collection_url(coll), envelope([indicator(1), malware])).json()
    assert status["success_count"] == 1 and status["failure_count"] == 1
    event = find_event(live_server, admin, "taxii.add_objects", lambda e: e["target"] == coll.alias)
    assert event["actor"] == created.json()["credential_id"]
    assert event["details"] == {"new": 1, "duplicates": 0, "failures": 1, "partner": slug}

    with rest(live_server, admin[1]) as client:
        everything = client.get("/audit", params={"limit": 1000}).text
        verified = client.get("/audit/verify").json()
    assert key not in everything and key.partition(".")[2] not in everything  # the key is never logged
    assert verified["ok"] is True, verified["problems"]


# --- `exchange audit verify` --------------------------------------------------------------


def test_exchange_audit_verify_detects_an_edited_row(backend, tmp_path):
    if backend != "sqlite":
        pytest.skip(
            "edits the SQLite file of a fresh data dir directly; the chain checks above cover PostgreSQL"
        )
    env = cli.environment(tmp_path / "data")

    def run(*args: str) -> cli.Result:
        return cli.run(env, *args)

    assert run("init").returncode == 0
    slug = "cert-xx"
    assert run("partner", "add", slug, "--name", "CERT-XX", "--country", "XX").returncode == 0
    doc = tmp_path / "xx.yaml"
    doc.write_text(f"partner: {slug}\ntitle: MoU\nvalid_from: 2024-01-01\nvalid_until: 2030-01-01\n")
    assert run("agreement", "apply", str(doc)).returncode == 0

    intact = run("audit", "verify")
    assert intact.returncode == 0, intact.stderr
    database = tmp_path / "data" / "exchange.db"
    with closing(sqlite3.connect(database)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM audit_event").fetchone()
        (seq,) = conn.execute("SELECT seq FROM audit_event WHERE action = 'agreement.apply'").fetchone()
    assert intact.stdout.splitlines()[0] == f"audit trail intact: {count} events"
    assert count >= 3  # partner.create, credential.create, agreement.apply

    with closing(sqlite3.connect(database)) as conn, conn:
        conn.execute("UPDATE audit_event SET actor = 'someone-else' WHERE seq = ?", (seq,))
    broken = run("audit", "verify")
    assert broken.returncode == 1
    assert "TAMPERED" in broken.stderr
    assert f"event {seq} was altered after it was written" in broken.stderr


def test_a_key_pasted_as_user_name_is_not_recorded(db):
    from exchange.auth.service import failure_actor

    credential, key = auth_service.create_credential(db, name="pasted", role="analyst")
    assert failure_actor(db, key) == credential.id
    assert failure_actor(db, key.partition(".")[2]) == "unknown"
    assert failure_actor(db, "") == "unknown"
    assert failure_actor(db, "cred-0123456789abcdef.s3cr3tS3cr3tS3cr3t") == "unknown"


def test_exchange_audit_checkpoint_catches_a_rollback_that_verify_alone_cannot(backend, tmp_path):
    if backend != "sqlite":
        pytest.skip("edits the SQLite file of a fresh data dir directly; the checks above cover PostgreSQL")
    env = cli.environment(tmp_path / "data")

    def run(*args: str) -> cli.Result:
        return cli.run(env, *args)

    assert run("init").returncode == 0
    database = tmp_path / "data" / "exchange.db"
    with closing(sqlite3.connect(database)) as conn:
        kept = conn.execute("SELECT seq, hash, signature FROM audit_head").fetchone()
    assert run("partner", "add", "cert-yy", "--name", "CERT-YY", "--country", "YY").returncode == 0
    checkpoint = tmp_path / "cp.json"
    made = run("audit", "checkpoint", str(checkpoint))
    assert made.returncode == 0, made.stderr
    assert json.loads(checkpoint.read_text())["seq"] > kept[0]
    assert run("audit", "verify", "--checkpoint", str(checkpoint)).returncode == 0

    # Roll back to the head kept earlier: the partner's creation disappears from the trail.
    with closing(sqlite3.connect(database)) as conn, conn:
        conn.execute("DELETE FROM audit_event WHERE seq > ?", (kept[0],))
        conn.execute("UPDATE audit_head SET seq = ?, hash = ?, signature = ?", kept)
    alone = run("audit", "verify")
    assert alone.returncode == 0, alone.stderr
    assert "cannot prove: that no events at the end of the trail were removed" in alone.stdout
    caught = run("audit", "verify", "--checkpoint", str(checkpoint))
    assert caught.returncode == 1
    assert "which is missing: the trail was cut back to event" in caught.stderr
    refused = run("audit", "verify", "--checkpoint", str(tmp_path / "nope.json"))
    assert refused.returncode == 1 and "cannot read" in refused.stderr


# --- every state-changing action is audited ---------------------------------------------------


@pytest.mark.live
def test_running_a_feed_or_a_push_by_hand_over_rest_is_audited(live_server, admin):
    with live_server.session() as db:
        before = db.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())).first()
    coll = live_server.collection()
    name = f"hand-{uuid.uuid4().hex[:8]}"
    with rest(live_server, admin[1]) as client:
        created = client.post(
            "/feeds",
            json={"name": name, "kind": "text", "url": "http://127.0.0.1:9/x.txt", "collection": coll.alias},
        )
        assert created.status_code == 201, created.text
        started = client.post(f"/feeds/{name}/run")
        assert started.status_code == 202, started.text
    event = find_event(live_server, admin, "feed.run", lambda e: e["target"] == name and e["seq"] > before)
    assert event["actor"] == admin[0]
    assert event["details"] == {"run": started.json()["run"]}


def test_cli_collection_add_and_feed_run_are_audited(env, tmp_path):
    def run(*args: str) -> cli.Result:
        return cli.run(env, *args)

    assert run("init").returncode == 0  # the commands below open an existing exchange only
    alias = f"c-{uuid.uuid4().hex[:10]}"
    added = run("collection", "add", alias, "--default-tlp", "green", "--json")
    assert added.returncode == 0, added.stderr
    listed = json.loads(run("audit", "list", "--action", "collection.create", "--json").stdout)
    event = next(e for e in listed if e["target"] == alias)
    assert event["actor"] == "cli"
    assert event["details"] == {"id": json.loads(added.stdout)["id"], "default_tlp": "green"}

    feed = f"cli-{uuid.uuid4().hex[:8]}"
    assert (
        run(
            "feed", "add", feed, "--kind", "text", "--url", "http://127.0.0.1:9/x.txt", "--collection", alias
        ).returncode
        == 0
    )
    assert run("feed", "run", feed).returncode == 1  # nothing listens on port 9: the run fails, but ran
    listed = json.loads(run("audit", "list", "--action", "feed.run", "--json").stdout)
    assert [e["actor"] for e in listed if e["target"] == feed] == ["cli"]


@pytest.mark.live
def test_a_checkpoint_over_rest_verifies_and_verify_says_what_it_proves(live_server, admin):
    with rest(live_server, admin[1]) as client:
        taken = client.get("/audit/checkpoint")
        assert taken.status_code == 200, taken.text
        checkpoint = taken.json()
        report = client.get("/audit/verify").json()
    assert (
        checkpoint["type"] == "exchange-audit-checkpoint"
        and checkpoint["iss"] == live_server.settings.identity_id
    )
    assert report["ok"] is True, report["problems"]
    assert report["proves"] and any("cannot" not in line for line in report["proves"])
    assert any("roll the trail back" in line for line in report["cannot_prove"])
    with live_server.session() as db:
        checked = audit.verify(db, checkpoints=[("rest", audit.read_checkpoint(json.dumps(checkpoint)))])
    assert checked.ok, checked.problems
    assert any(line.startswith("rest (taken ") for line in checked.proves)
