"""End to end: what partners receive over TAXII and in exports is signed, and verifies with
independent JOSE libraries against the published JWKS; tampering is caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import rfc8785

from tests.signing import joserfc_verify, jwcrypto_verify
from tests.support import cli
from tests.support.partners import agreement_doc
from tests.support.stix import envelope, indicator
from tests.support.strict import bundle_problems
from tests.support.taxii import TAXII, post

pytestmark = pytest.mark.live


def _signed_payload(body: dict) -> tuple[str, bytes]:  # type: ignore[type-arg]
    token = body["x_exchange_jws"]
    rest = {k: v for k, v in body.items() if k != "x_exchange_jws"}
    return token, rfc8785.dumps(rest)


@pytest.fixture
def partner_setup(live_server, http, partners):  # type: ignore[no-untyped-def]
    coll = live_server.collection(default_tlp="green")
    objs = [indicator(i, x_note="é ünïcode") for i in range(5)]
    assert post(http, live_server.collection_url(coll), envelope(objs)).json()["success_count"] == 5
    slug, cred = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"})
    )
    jwks = httpx.get(f"{live_server.url}/.well-known/jwks.json").json()
    return coll, objs, slug, cred, jwks


@pytest.fixture
def strict_setup(live_server, http, partners):  # type: ignore[no-untyped-def]
    """Like partner_setup, with objects that pass strict validation themselves (no custom property)."""
    coll = live_server.collection(default_tlp="green")
    objs = [indicator(i, description="seen scanning") for i in range(3)]
    assert post(http, live_server.collection_url(coll), envelope(objs)).json()["success_count"] == 3
    assert bundle_problems({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objs}) == []
    slug, cred = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"})
    )
    jwks = httpx.get(f"{live_server.url}/.well-known/jwks.json").json()
    return coll, objs, slug, cred, jwks


def test_every_partner_page_is_signed_and_verifies_independently(live_server, partner_setup):
    coll, objs, slug, cred, jwks = partner_setup
    client = httpx.Client(auth=cred, headers={"Accept": TAXII})
    url = live_server.collection_url(coll)
    pages = [
        client.get(url + "objects/", params={"limit": 2}),
        client.get(url + "manifest/"),
        client.get(f"{url}objects/{objs[0]['id']}/"),
        client.get(f"{url}objects/{objs[0]['id']}/versions/"),
        client.get(url + "objects/", params={"added_after": "2100-01-01T00:00:00Z"}),  # empty page
    ]
    for response in pages:
        assert response.status_code == 200, response.text
        body = response.json()
        token, payload = _signed_payload(body)
        # What is signed is exactly what was received, minus the signature member.
        assert response.content == payload[:-1] + b',"x_exchange_jws":' + json.dumps(token).encode() + b"}"
        for verify in (jwcrypto_verify, joserfc_verify):
            header = verify(token, payload, jwks)
            assert header["alg"] == "EdDSA" and header["aud"] == slug
            assert header["cty"] == "taxii+json;version=2.1" and header["kid"] in {
                k["kid"] for k in jwks["keys"]
            }


def test_a_changed_object_or_header_fails_verification(live_server, partner_setup):
    import base64

    coll, _objs, _slug, cred, jwks = partner_setup
    body = httpx.get(
        live_server.collection_url(coll) + "objects/", auth=cred, headers={"Accept": TAXII}
    ).json()
    token, payload = _signed_payload(body)
    tampered = dict(body)
    tampered["objects"] = [dict(body["objects"][0], name="changed"), *body["objects"][1:]]
    _, bad_payload = _signed_payload(tampered)
    protected, _, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(protected + "=="))
    forged = (
        base64.urlsafe_b64encode(json.dumps(dict(header, aud="someone-else")).encode()).decode().rstrip("=")
    )
    for verify in (jwcrypto_verify, joserfc_verify):
        # Each library raises its own exception type; any refusal is the point.
        with pytest.raises(Exception):  # noqa: B017
            verify(token, bad_payload, jwks)
        with pytest.raises(Exception):  # noqa: B017
            verify(f"{forged}..{signature}", payload, jwks)


def test_staff_pages_are_not_signed(live_server, http, partner_setup):
    coll, *_ = partner_setup
    assert "x_exchange_jws" not in http.get(live_server.collection_url(coll) + "objects/").json()


def test_export_cli_writes_a_signed_bundle_and_sidecar_that_verify(live_server, partner_setup, tmp_path):
    coll, objs, slug, _cred, jwks = partner_setup
    env = cli.environment(live_server.settings.data_dir, live_server.settings.database_url)
    out = tmp_path / "bundle.json"
    done = cli.run(env, "export", coll.alias, "--partner", slug, "-o", str(out))
    assert done.returncode == 0, done.stderr
    bundle = json.loads(out.read_bytes())
    assert bundle["type"] == "bundle" and {o["id"] for o in bundle["objects"]} == {o["id"] for o in objs}
    token, payload = _signed_payload(bundle)
    assert (tmp_path / "bundle.json.jws").read_text().strip() == token
    for verify in (jwcrypto_verify, joserfc_verify):
        assert verify(token, payload, jwks)["cty"] == "stix+json;version=2.1"
    ok = cli.run(env, "verify", str(out))
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr
    out.write_bytes(out.read_bytes().replace(b"test indicator 1", b"test indicator X"))
    bad = cli.run(env, "verify", str(out))
    assert bad.returncode == 1 and "bad signature" in bad.stdout + bad.stderr


def test_export_cli_detached_writes_a_strictly_valid_bundle_its_sidecar_verifies(
    live_server, strict_setup, tmp_path
):
    coll, _objs, slug, _cred, jwks = strict_setup
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env["EXCHANGE_DATA_DIR"] = str(live_server.settings.data_dir)
    if live_server.settings.database_url:
        env["EXCHANGE_DATABASE_URL"] = live_server.settings.database_url
    exe = str(Path(sys.executable).with_name("exchange"))
    out = tmp_path / "bundle.json"

    def run(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=120)

    done = run("export", coll.alias, "--partner", slug, "--signature", "detached", "-o", str(out))
    assert done.returncode == 0, done.stderr
    bundle = json.loads(out.read_bytes())
    assert "x_exchange_jws" not in bundle and bundle_problems(bundle) == []
    token = (tmp_path / "bundle.json.jws").read_text().strip()
    assert jwcrypto_verify(token, rfc8785.dumps(bundle), jwks)["aud"] == slug
    for named in (out, tmp_path / "bundle.json.jws"):
        ok = run("verify", str(named), "--audience", slug)
        assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stdout + ok.stderr
    out.write_bytes(out.read_bytes().replace(b"test indicator 1", b"test indicator X"))
    bad = run("verify", str(tmp_path / "bundle.json.jws"))
    assert bad.returncode == 1 and "bad signature" in bad.stdout


def test_export_over_rest_offers_a_strictly_valid_bundle_with_the_signature_in_a_header(
    live_server, strict_setup, admin
):
    coll, objs, slug, _cred, jwks = strict_setup
    url = f"{live_server.url}/api/v1/exports/{coll.alias}"
    auth = {"Authorization": f"Bearer {admin[1]}"}
    embedded = httpx.get(url, params={"partner": slug}, headers=auth)
    assert embedded.status_code == 200, embedded.text
    assert embedded.headers["x-exchange-jws"] == embedded.json()["x_exchange_jws"]
    detached = httpx.get(url, params={"partner": slug, "signature": "detached"}, headers=auth)
    assert detached.status_code == 200, detached.text
    bundle = detached.json()
    assert "x_exchange_jws" not in bundle and bundle_problems(bundle) == []
    assert {o["id"] for o in bundle["objects"]} == {o["id"] for o in objs}
    token = detached.headers["x-exchange-jws"]
    for verify in (jwcrypto_verify, joserfc_verify):
        assert verify(token, detached.content, jwks)["aud"] == slug  # the body bytes as served
    refused = httpx.get(url, params={"partner": slug, "signature": "none"}, headers=auth)
    assert refused.status_code == 422


def test_export_over_rest_matches_the_agreement(live_server, partner_setup, admin):
    coll, objs, slug, _cred, jwks = partner_setup
    response = httpx.get(
        f"{live_server.url}/api/v1/exports/{coll.alias}",
        params={"partner": slug},
        headers={"Authorization": f"Bearer {admin[1]}"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/stix+json")
    bundle = response.json()
    token, payload = _signed_payload(bundle)
    assert jwcrypto_verify(token, payload, jwks)["aud"] == slug
    recipients = httpx.get(
        f"{live_server.url}/api/v1/objects/{objs[0]['id']}/recipients",
        headers={"Authorization": f"Bearer {admin[1]}"},
    ).json()
    assert any(r["partner"] == slug and r["channel"] == "export" for r in recipients["received"])


def test_require_signature_rejects_unsigned_and_badly_signed_submissions(live_server, partners, http):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sqlalchemy import func, select

    from exchange.intel.models import ObjectVersion
    from exchange.partner import service as partner_service
    from exchange.signing import CTY_TAXII, SigningKey, canonical_bytes, sign_canonical
    from exchange.signing.keys import b64url, thumbprint

    def keypair() -> SigningKey:
        private = Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return SigningKey(kid=thumbprint(b64url(raw)), private_key=private)

    registered, stranger = keypair(), keypair()
    coll = live_server.collection()
    slug, cred = partners.add(
        lambda s: agreement_doc(s, write={"collections": [coll.alias], "require_signature": True})
    )
    with live_server.session() as db:
        partner_service.add_public_key(db, slug, registered.public_jwk(), actor="test")
    client = httpx.Client(auth=cred, headers={"Accept": TAXII})

    def signed(env: dict, key: SigningKey) -> dict:  # type: ignore[type-arg]
        token = sign_canonical(canonical_bytes(env), key=key, cty=CTY_TAXII, aud=None, iss=slug)
        return dict(env, x_exchange_jws=token)

    def stored() -> int:
        with live_server.session() as db:
            return db.scalar(select(func.count()).where(ObjectVersion.collection_pk == coll.pk))

    unsigned = post(client, live_server.collection_url(coll), envelope([indicator(1)])).json()
    assert unsigned["failure_count"] == 1 and "signature" in unsigned["failures"][0]["message"]
    wrong = post(client, live_server.collection_url(coll), signed(envelope([indicator(2)]), stranger)).json()
    assert wrong["failure_count"] == 1 and "unknown kid" in wrong["failures"][0]["message"]
    good_env = signed(envelope([indicator(3)]), registered)
    tampered = dict(good_env, objects=[dict(good_env["objects"][0], name="changed")])
    bad = post(client, live_server.collection_url(coll), tampered).json()
    assert bad["failure_count"] == 1 and "bad signature" in bad["failures"][0]["message"]
    assert stored() == 0
    ok = post(client, live_server.collection_url(coll), good_env).json()
    assert ok["success_count"] == 1 and stored() == 1


def test_a_malformed_key_stored_by_an_older_release_is_no_key_not_a_500(live_server, partners):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sqlalchemy import update

    from exchange.partner.models import Partner
    from exchange.signing import CTY_TAXII, SigningKey, canonical_bytes, sign_canonical
    from exchange.signing.keys import public_x, thumbprint

    private = Ed25519PrivateKey.generate()
    key = SigningKey(kid=thumbprint(public_x(private.public_key())), private_key=private)
    coll = live_server.collection()
    slug, cred = partners.add(
        lambda s: agreement_doc(s, write={"collections": [coll.alias], "require_signature": True})
    )
    client = httpx.Client(auth=cred, headers={"Accept": TAXII})

    def store_keys(keys: list[dict]) -> None:  # type: ignore[type-arg]
        with live_server.session() as db:
            db.execute(update(Partner).where(Partner.slug == slug).values(public_keys=json.dumps(keys)))

    def signed(env: dict) -> dict:  # type: ignore[type-arg]
        token = sign_canonical(canonical_bytes(env), key=key, cty=CTY_TAXII, aud=None, iss=slug)
        return dict(env, x_exchange_jws=token)

    malformed = [{"kty": "OKP", "crv": "Ed25519", "x": x} for x in ("\u00e4", "!!!", "AAAA", 123)]
    store_keys(malformed)
    answer = post(client, live_server.collection_url(coll), signed(envelope([indicator(1)])))
    assert answer.status_code == 202, answer.text
    assert answer.json()["failure_count"] == 1
    assert "no valid public key" in answer.json()["failures"][0]["message"]
    store_keys([*malformed, key.public_jwk()])
    answer = post(client, live_server.collection_url(coll), signed(envelope([indicator(2)])))
    assert answer.status_code == 202 and answer.json()["success_count"] == 1, answer.text
