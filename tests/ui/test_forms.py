"""The administrators' and analysts' forms, in process: what they change, and bad input shown on
the page (never a 500, never half a change)."""

from __future__ import annotations

import base64
import re

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exchange.agreement import service as agreement_service
from exchange.audit import service as audit
from exchange.auth import service as auth_service
from exchange.feed import service as feed_service
from exchange.partner import service as partner_service
from exchange.signing import KeyRing, default_directory
from tests.support.pages import Exchange, csrf_of, sign_in


def test_credentials_keys_and_suspension(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    admin = sign_in(app, exchange.admin_key)
    csrf = csrf_of(admin.get("/ui/partners/cert-in").text)
    issued = admin.post("/ui/partners/cert-in/credentials", data={"csrf": csrf, "name": "their MISP"})
    assert issued.status_code == 200 and 'id="new-key"' in issued.text
    key = issued.text.split('id="new-key">', 1)[1].split("<", 1)[0]
    credential_id = key.partition(".")[0]
    # Shown once: the partner page does not show it again.
    assert key not in admin.get("/ui/partners/cert-in").text
    with exchange.session() as db:
        assert auth_service.get(db, credential_id).name == "their MISP"
    # Revoke only through the partner it belongs to.
    wrong = admin.post(f"/ui/credentials/{credential_id}/revoke", data={"csrf": csrf, "partner": "nobody"})
    assert wrong.status_code == 404
    assert (
        admin.post(
            f"/ui/credentials/{credential_id}/revoke", data={"csrf": csrf, "partner": "cert-in"}
        ).status_code
        == 303
    )
    with exchange.session() as db:
        assert auth_service.get(db, credential_id).revoked_at is not None

    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    jwk = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
        "kid": "lk-1",
    }
    for bad in ("not json", orjson.dumps({**jwk, "d": "secret"}).decode(), '{"kty": "RSA"}'):
        answer = admin.post("/ui/partners/cert-in/keys", data={"csrf": csrf, "jwk": bad})
        assert answer.status_code == 400 and 'class="error"' in answer.text
    assert (
        admin.post(
            "/ui/partners/cert-in/keys", data={"csrf": csrf, "jwk": orjson.dumps(jwk).decode()}
        ).status_code
        == 303
    )
    with exchange.session() as db:
        keys = orjson.loads(partner_service.get_by_slug(db, "cert-in").public_keys)
    assert [k["kid"] for k in keys] == ["lk-1"]

    assert (
        admin.post("/ui/partners/cert-in/status", data={"csrf": csrf, "status": "suspended"}).status_code
        == 303
    )
    assert (
        admin.post("/ui/partners/cert-in/status", data={"csrf": csrf, "status": "deleted"}).status_code == 400
    )
    with exchange.session() as db:
        assert partner_service.get_by_slug(db, "cert-in").status == "suspended"
        partner_service.set_status(db, "cert-in", "active", actor="test")

    taken = admin.post(
        "/ui/partners", data={"csrf": csrf, "slug": "cert-in", "name": "Again", "country": "IN"}
    )
    assert taken.status_code == 400 and "already exists" in taken.text


def test_agreement_yaml_errors_beside_their_fields_and_nothing_saved_without_save(
    app, exchange: Exchange
) -> None:  # type: ignore[no-untyped-def]
    admin = sign_in(app, exchange.admin_key)
    page = admin.get("/ui/agreements/cert-in")
    csrf = csrf_of(page.text)
    with exchange.session() as db:
        versions = len(agreement_service.history(db, "cert-in"))
    broken = admin.post(
        "/ui/agreements/cert-in", data={"csrf": csrf, "action": "preview_yaml", "yaml": "partner: [cert-in"}
    )
    assert broken.status_code == 422 and 'id="err-general"' in broken.text and "not valid YAML" in broken.text
    other = admin.post(
        "/ui/agreements/cert-in", data={"csrf": csrf, "action": "save_yaml", "yaml": "partner: cert-lk\n"}
    )
    assert other.status_code == 422 and 'id="err-partner"' in other.text
    text = agreement_service.canonical_yaml(demo_doc := _current(exchange)).replace(
        "max_tlp: amber", "max_tlp: purple"
    )
    wrong = admin.post("/ui/agreements/cert-in", data={"csrf": csrf, "action": "save_yaml", "yaml": text})
    assert wrong.status_code == 422 and 'id="err-read_max_tlp"' in wrong.text
    form = {
        "csrf": csrf,
        "action": "preview",
        "title": "t",
        "valid_from": "2026-01-01",
        "valid_until": "2027-01-01",
        "status": "active",
        "read_max_tlp": "amber",
    }
    unknown = admin.post(
        "/ui/agreements/cert-in",
        data=form | {"read_collections": "no-such-collection", "read_min_confidence": "lots"},
    )
    assert unknown.status_code == 422
    assert 'id="err-read_collections"' in unknown.text and 'id="err-read_min_confidence"' in unknown.text
    # "²".isdigit() is true, int("²") raises: once a 500 for each of these fields
    for field, value in (
        ("read_min_confidence", "\u00b2"),
        ("rate_limit_per_minute", "\u00b2"),
        ("rate_limit_burst", "\u00b9"),
    ):
        good = form | {"read_collections": "indicators", "rate_limit_per_minute": "60"}
        superscript = admin.post("/ui/agreements/cert-in", data=good | {field: value})
        assert superscript.status_code == 422, (field, superscript.text[-500:])
        assert f'id="err-{field}"' in superscript.text, field
    previewed = admin.post(
        "/ui/agreements/cert-in",
        data={
            "csrf": csrf,
            "action": "preview_yaml",
            "yaml": agreement_service.canonical_yaml(demo_doc).replace("max_tlp: amber", "max_tlp: green"),
        },
    )
    assert previewed.status_code == 200 and 'id="preview"' in previewed.text
    with exchange.session() as db:
        assert len(agreement_service.history(db, "cert-in")) == versions  # previews store nothing


def _current(exchange: Exchange) -> dict:  # type: ignore[type-arg]
    with exchange.session() as db:
        return agreement_service.current_document(db, "cert-in")


def test_publish_shows_problems_and_stores_nothing_on_them(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    analyst = sign_in(app, exchange.analyst_key)
    csrf = csrf_of(analyst.get("/ui/publish").text)
    base = {"csrf": csrf, "title": "Bad one", "tlp": "amber", "collection": "incidents", "action": "publish"}
    with exchange.session() as db:
        before = len(audit.list_(db, limit=1000, action="publish.incident"))
    cases = [
        ({"observables": "1.2.3.4\nnot an observable"}, "not an observable"),
        ({"tlp": "purple", "observables": "1.2.3.4"}, "tlp"),
        ({"confidence": "101"}, "confidence"),
        ({"first_seen": "yesterday"}, "first_seen"),
        ({"first_seen": "9999-12-31T23:59:59-05:00"}, "first_seen"),
        ({"collection": "no-such"}, "no-such"),
        ({"title": ""}, "title"),
    ]
    for change, shown in cases:
        answer = analyst.post("/ui/publish", data={**base, **change})
        assert answer.status_code == 422, change
        assert 'id="publish-error"' in answer.text and shown in answer.text, change
    with exchange.session() as db:
        assert len(audit.list_(db, limit=1000, action="publish.incident")) == before
    detected = analyst.get(
        "/ui/publish/detect",
        params={"lines": "45.13.22.7\n\n2001:db8::1\nx@y.example\nd41d8cd98f00b204e9800998ecf8427e\n???"},
    ).json()
    assert [o["type"] for o in detected["observables"]] == [
        "ipv4-addr",
        "ipv6-addr",
        "email-addr",
        "file:hashes.'MD5'",
        None,
    ]
    assert "Seen" in analyst.get("/ui/lookup", params={"value": "45.13.22.7"}).text
    assert "Not seen" in analyst.get("/ui/lookup", params={"value": "198.51.100.200"}).text


def test_feeds_add_edit_with_errors_shown_and_key_rotation(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    admin = sign_in(app, exchange.admin_key)
    csrf = csrf_of(admin.get("/ui/feeds").text)
    fields = {
        "csrf": csrf,
        "name": "abuse-csv",
        "kind": "csv",
        "url": "https://feeds.example/abuse.csv",
        "collection": "indicators",
        "every": "1h",
        "tlp": "green",
        "enabled": "1",
    }
    bad = admin.post("/ui/feeds", data={**fields, "url": "file:///etc/passwd"})
    assert bad.status_code == 422 and 'class="error"' in bad.text
    bad = admin.post("/ui/feeds", data={**fields, "every": "often"})
    assert bad.status_code == 422
    added = admin.post("/ui/feeds", data=fields)
    assert added.status_code == 303 and added.headers["location"] == "/ui/feeds/abuse-csv"
    assert (
        admin.post(
            "/ui/feeds/abuse-csv",
            data={
                "csrf": csrf,
                "url": "https://feeds.example/v2.csv",
                "collection": "indicators",
                "every": "2h",
                "tlp": "amber",
            },
        ).status_code
        == 303
    )
    with exchange.session() as db:
        feed = feed_service.read(db, feed_service.get_by_name(db, "abuse-csv"))
    assert feed.url == "https://feeds.example/v2.csv" and feed.tlp == "amber" and feed.enabled is False
    page = admin.get("/ui/feeds/abuse-csv")
    assert page.status_code == 200 and "v2.csv" in page.text
    assert admin.get("/ui/feeds/none-such").status_code == 404

    keyring = KeyRing(default_directory(exchange.settings))
    before = {k.state: k.kid for k in keyring.keys()}
    assert admin.post("/ui/keys/rotate", data={"csrf": csrf}).status_code == 400  # not confirmed
    assert admin.post("/ui/keys/rotate", data={"csrf": csrf, "confirm": "yes"}).status_code == 303
    after = {k.state: k.kid for k in keyring.keys()}
    assert after["current"] == before["next"] and after["retired"] == before["current"]
    assert before["next"] in admin.get("/ui/keys").text


def test_staff_keys_issued_once_and_revoked_only_as_staff_keys(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    admin = sign_in(app, exchange.admin_key)
    csrf = csrf_of(admin.get("/ui/users").text)
    assert admin.post("/ui/users", data={"csrf": csrf, "name": "x", "role": "partner"}).status_code == 400
    assert admin.post("/ui/users", data={"csrf": csrf, "name": " ", "role": "analyst"}).status_code == 400
    issued = admin.post("/ui/users", data={"csrf": csrf, "name": "Karim", "role": "analyst"})
    assert issued.status_code == 200
    key = issued.text.split('id="new-key">', 1)[1].split("<", 1)[0]
    karim = sign_in(app, key)
    assert karim.get("/ui/").status_code == 200
    assert admin.post(f"/ui/users/{key.partition('.')[0]}/revoke", data={"csrf": csrf}).status_code == 303
    assert karim.get("/ui/").status_code == 303
    # A partner's credential is not a staff key: not revoked here.
    partner_id = exchange.partner_key.partition(".")[0]
    assert admin.post(f"/ui/users/{partner_id}/revoke", data={"csrf": csrf}).status_code == 404
    with exchange.session() as db:
        assert auth_service.get(db, partner_id).revoked_at is None
        trail = audit.list_(db, limit=5, action="user.create")
    assert trail[0].details.find(key.partition(".")[2]) == -1


def test_without_a_feed_launcher_feed_changes_are_a_503_page_and_change_nothing(exchange: Exchange) -> None:
    from exchange.main import create_app

    bare = create_app(exchange.settings)  # no feeds package wired in
    admin = sign_in(bare, exchange.admin_key)
    csrf = csrf_of(admin.get("/ui/feeds").text)
    answer = admin.post(
        "/ui/feeds",
        data={
            "csrf": csrf,
            "name": "nope",
            "kind": "csv",
            "url": "https://x.example/a.csv",
            "collection": "indicators",
        },
    )
    assert answer.status_code == 503 and "<html" in answer.text
    with exchange.session() as db:
        assert all(f.name != "nope" for f in feed_service.list_(db))


def _input_value(html: str, name: str) -> str:
    found = re.search(rf'<input id="{name}" name="{name}"[^>]* value="([^"]*)"', html)
    assert found, f"no input {name}"
    return found.group(1)


def test_the_agreement_form_keeps_relay_and_rate_limit(app, exchange: Exchange) -> None:  # type: ignore[no-untyped-def]
    """Every part of an agreement has a field: saving the form as the page shows it loses nothing."""
    admin = sign_in(app, exchange.admin_key)
    csrf = csrf_of(admin.get("/ui/agreements/cert-in").text)
    doc = _current(exchange)
    doc["write"] = {**doc["write"], "relay_to": "all", "anonymize_on_relay": True}
    doc["rate_limit"] = {"per_minute": 600, "burst": 50}
    saved = admin.post(
        "/ui/agreements/cert-in",
        data={"csrf": csrf, "action": "save_yaml", "yaml": agreement_service.canonical_yaml(doc)},
    )
    assert saved.status_code == 200, saved.text
    page = admin.get("/ui/agreements/cert-in").text
    assert _input_value(page, "write_relay_to") == "all"
    assert 'name="write_anonymize_on_relay" value="1" checked' in page
    assert (
        _input_value(page, "rate_limit_per_minute") == "600"
        and _input_value(page, "rate_limit_burst") == "50"
    )

    current = _current(exchange)
    read, write = current["read"], current["write"]
    fields = {
        "csrf": csrf,
        "action": "save",
        "title": current["title"],
        "valid_from": current["valid_from"],
        "valid_until": current["valid_until"],
        "status": current["status"],
        "read_collections": read["collections"],
        "read_max_tlp": read["max_tlp"],
        "read_types": ", ".join(read.get("types") or []),
        "write_collections": write["collections"],
        "write_relay_to": _input_value(page, "write_relay_to"),
        "write_anonymize_on_relay": "1",
        "rate_limit_per_minute": _input_value(page, "rate_limit_per_minute"),
        "rate_limit_burst": _input_value(page, "rate_limit_burst"),
    }
    again = admin.post("/ui/agreements/cert-in", data=fields)
    assert again.status_code == 200, again.text
    kept = _current(exchange)
    assert kept["write"]["relay_to"] == "all" and kept["write"]["anonymize_on_relay"] is True
    assert kept["rate_limit"] == {"per_minute": 600, "burst": 50}

    # A list of partners, and a name that is no partner: refused beside the field, nothing saved.
    with exchange.session() as db:
        if partner_service.get_by_slug(db, "cert-relay", missing_ok=True) is None:
            partner_service.create(db, slug="cert-relay", name="Relay CERT", country="LK", actor="test")
        versions = len(agreement_service.history(db, "cert-in"))
    listed = admin.post(
        "/ui/agreements/cert-in", data=fields | {"action": "preview", "write_relay_to": "cert-relay"}
    )
    assert listed.status_code == 200 and _input_value(listed.text, "write_relay_to") == "cert-relay"
    wrong = admin.post("/ui/agreements/cert-in", data=fields | {"write_relay_to": "cert-relay, no-such-cert"})
    assert wrong.status_code == 422 and 'id="err-write_relay_to"' in wrong.text
    slow = admin.post("/ui/agreements/cert-in", data=fields | {"rate_limit_per_minute": "fast"})
    assert slow.status_code == 422 and 'id="err-rate_limit_per_minute"' in slow.text
    with exchange.session() as db:
        assert len(agreement_service.history(db, "cert-in")) == versions
    # Back to the demo's agreement for the tests after this one.
    admin.post(
        "/ui/agreements/cert-in",
        data={
            "csrf": csrf,
            "action": "save_yaml",
            "yaml": agreement_service.canonical_yaml(doc_without(doc)),
        },
    )


def doc_without(doc: dict) -> dict:  # type: ignore[type-arg]
    """`doc` without the relay and rate-limit parts this test added."""
    write = {k: v for k, v in doc["write"].items() if k not in ("relay_to", "anonymize_on_relay")}
    return {k: v for k, v in doc.items() if k != "rate_limit"} | {"write": write}
