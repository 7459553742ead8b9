"""Partner client certificates forwarded by a trusted TLS proxy: a bound credential signs in with
its certificate alone, its key alone is refused, and nobody else can claim a certificate."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from exchange.audit import service as audit
from exchange.auth import certs
from exchange.config import Settings
from exchange.context import context_of
from exchange.database.core import session_scope
from exchange.main import create_app
from tests.support.certs import issue, make_ca
from tests.support.cli import environment, run

TAXII = {"Accept": "application/taxii+json;version=2.1"}
COLLECTIONS = "/taxii2/root/collections/"
PROXY = ("127.0.0.1", 40000)


@dataclass
class World:
    env: dict[str, str]
    settings: Settings
    demo: dict[str, Any]
    bound_cert: Path  # bound to the demo partner's credential
    other_cert: Path  # bound to a second credential of the same partner
    stray_cert: Path  # signed by the CA, bound to nothing
    second: tuple[str, str]

    app: Any

    def client(self, peer: tuple[str, int] = PROXY) -> TestClient:
        return TestClient(self.app, client=peer)

    @property
    def partner(self) -> tuple[str, str]:
        return self.demo["partner"]["id"], self.demo["partner"]["key"]


def forwarded(cert: Path, verify: str = "SUCCESS") -> dict[str, str]:
    return TAXII | {"X-Client-Cert": quote(cert.read_text()), "X-Client-Verify": verify}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("certs")
    env = environment(tmp / "data", EXCHANGE_SECRET_KEY="c" * 40)
    demo = json.loads(run(env, "demo", "--json").stdout)
    ca = make_ca()
    bound, other, stray = (issue(tmp, ca, name, client=True)[0] for name in ("cert-in", "cert-in-2", "stray"))
    second = json.loads(run(env, "credential", "create", "cert-in", "--json").stdout)
    for credential, cert in ((demo["partner"]["id"], bound), (second["credential_id"], other)):
        done = run(env, "credential", "bind-cert", credential, "--cert", str(cert))
        assert done.returncode == 0, done.stderr
    settings = Settings(data_dir=tmp / "data", secret_key="c" * 40, trusted_proxies="127.0.0.1, ::1")
    second_key = (second["credential_id"], second["key"])
    return World(env, settings, demo, bound, other, stray, second_key, create_app(settings))


def test_the_certificate_alone_signs_in_as_its_credential(world: World) -> None:
    with world.client() as client:
        answer = client.get(COLLECTIONS, headers=forwarded(world.bound_cert))
        assert answer.status_code == 200 and answer.json()["collections"]
        pulled = client.get(COLLECTIONS + "indicators/objects/", headers=forwarded(world.bound_cert))
        assert pulled.status_code == 200 and pulled.json()["objects"]
        # With its own key as well: still the same credential.
        both = client.get(COLLECTIONS, headers=forwarded(world.bound_cert), auth=world.partner)
        assert both.status_code == 200


def test_a_bound_credentials_key_is_refused_without_its_certificate(world: World) -> None:
    with world.client() as client:
        assert client.get(COLLECTIONS, headers=TAXII, auth=world.partner).status_code == 401
        rest = client.get("/api/v1/partners", headers={"Authorization": f"Bearer {world.partner[1]}"})
        assert rest.status_code == 401
        # Beside another credential's certificate, or an unbound one: refused too.
        assert (
            client.get(COLLECTIONS, headers=forwarded(world.other_cert), auth=world.partner).status_code
            == 401
        )
        assert (
            client.get(COLLECTIONS, headers=forwarded(world.stray_cert), auth=world.partner).status_code
            == 401
        )


def test_an_unbound_key_never_rides_on_someone_elses_certificate(world: World) -> None:
    admin = (world.demo["admin"]["id"], world.demo["admin"]["key"])
    with world.client() as client:
        assert client.get(COLLECTIONS, headers=TAXII, auth=admin).status_code == 200
        assert client.get(COLLECTIONS, headers=forwarded(world.bound_cert), auth=admin).status_code == 401
        # An unbound certificate with an unbound key: the key decides (the certificate adds nothing).
        assert client.get(COLLECTIONS, headers=forwarded(world.stray_cert), auth=admin).status_code == 200


def test_forwarded_headers_from_anyone_but_the_proxy_are_ignored(world: World) -> None:
    with world.client(("192.0.2.7", 5555)) as client:
        assert client.get(COLLECTIONS, headers=forwarded(world.bound_cert)).status_code == 401
        assert (
            client.get(COLLECTIONS, headers=forwarded(world.bound_cert), auth=world.partner).status_code
            == 401
        )
    with world.client(("testclient", 5555)) as client:  # not an address at all
        assert client.get(COLLECTIONS, headers=forwarded(world.bound_cert)).status_code == 401


@pytest.mark.parametrize("verify", ["NONE", "FAILED:certificate has expired", ""])
def test_a_certificate_the_proxy_did_not_verify_counts_for_nothing(world: World, verify: str) -> None:
    with world.client() as client:
        assert client.get(COLLECTIONS, headers=forwarded(world.bound_cert, verify)).status_code == 401


@pytest.mark.parametrize(
    "value",
    ["garbage", quote("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"), "%ZZ", "x" * 20000],
)
def test_garbage_in_the_certificate_header_is_a_401_not_a_500(world: World, value: str) -> None:
    with world.client() as client:
        headers = TAXII | {"X-Client-Cert": value, "X-Client-Verify": "SUCCESS"}
        assert client.get(COLLECTIONS, headers=headers).status_code == 401
        assert client.get("/api/v1/partners", headers=headers).status_code == 401


def test_a_revoked_credential_or_suspended_partner_is_refused_by_certificate(world: World) -> None:
    admin = (world.demo["admin"]["id"], world.demo["admin"]["key"])
    with world.client() as client:
        assert client.get(COLLECTIONS, headers=forwarded(world.other_cert)).status_code == 200
        assert (
            client.patch("/api/v1/partners/cert-in", auth=admin, json={"status": "suspended"}).status_code
            == 200
        )
        try:
            assert client.get(COLLECTIONS, headers=forwarded(world.other_cert)).status_code == 401
        finally:
            client.patch("/api/v1/partners/cert-in", auth=admin, json={"status": "active"})
        assert client.post(f"/api/v1/credentials/{world.second[0]}/revoke", auth=admin).status_code == 200
        assert client.get(COLLECTIONS, headers=forwarded(world.other_cert)).status_code == 401
        assert client.get(COLLECTIONS, headers=forwarded(world.bound_cert)).status_code == 200


def test_binding_is_checked_and_audited(world: World) -> None:
    staff = run(
        world.env, "credential", "bind-cert", world.demo["admin"]["id"], "--cert", str(world.stray_cert)
    )
    assert staff.returncode == 1 and "only partner credentials" in staff.stderr
    taken = run(world.env, "credential", "bind-cert", world.second[0], "--cert", str(world.bound_cert))
    assert taken.returncode == 1 and "already bound" in taken.stderr
    bad = run(world.env, "credential", "bind-cert", world.second[0], "--fingerprint", "12:34")
    assert bad.returncode == 1 and "64 hex digits" in bad.stderr
    not_pem = run(
        world.env, "credential", "bind-cert", world.second[0], "--cert", str(world.settings.data_dir)
    )
    assert not_pem.returncode == 1
    fingerprint = certs.fingerprint(world.stray_cert.read_bytes())
    colons = ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    done = run(world.env, "credential", "bind-cert", world.second[0], "--fingerprint", colons)
    assert done.returncode == 0 and fingerprint in done.stdout
    audit = run(world.env, "audit", "list", "--json")
    assert "credential.bind_certificate" in audit.stdout


def test_administrators_bind_and_unbind_through_the_rest_api(world: World) -> None:
    admin = (world.demo["admin"]["id"], world.demo["admin"]["key"])
    made = json.loads(run(world.env, "credential", "create", "cert-in", "--json").stdout)
    cert = issue(world.settings.data_dir.parent, make_ca(), "rest-bound", client=True)[0]
    path = f"/api/v1/credentials/{made['credential_id']}/certificate"
    with world.client() as client:
        partner = client.put(path, auth=world.partner, headers=forwarded(world.bound_cert), json={})
        assert partner.status_code == 403  # a partner binds nothing, not even through the proxy
        for body in (
            {},
            {"certificate_pem": "junk"},
            {"sha256": "zz"},
            {"sha256": "a" * 64, "certificate_pem": "x"},
        ):
            refused = client.put(path, auth=admin, json=body)
            assert refused.status_code in (400, 422), (body, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
        bound = client.put(path, auth=admin, json={"certificate_pem": cert.read_text()})
        assert bound.status_code == 200 and bound.json()["cert_sha256"] == certs.fingerprint(
            cert.read_bytes()
        )
        key = (made["credential_id"], made["key"])
        assert client.get(COLLECTIONS, headers=TAXII, auth=key).status_code == 401
        assert client.get(COLLECTIONS, headers=forwarded(cert)).status_code == 200
        assert client.delete(path, auth=admin).json()["cert_sha256"] is None
        assert client.get(COLLECTIONS, headers=TAXII, auth=key).status_code == 200
        assert client.get(COLLECTIONS, headers=forwarded(cert)).status_code == 401


def test_a_certificate_failure_counts_for_its_address_and_a_bound_one_is_rate_limited(world: World) -> None:
    """A certificate bound to nothing (a revoked partner's, still passing the proxy's check) is a
    failed login, counted with its address's others and audited only up to the threshold; it is
    not refused before its check (no slow hash to save), so a bound certificate behind the same
    address keeps working, drawing from its credential's rate like a key."""
    if time.time() % 60 > 45:  # counts are per minute: stay inside one
        time.sleep(61 - time.time() % 60)
    tight = create_app(
        world.settings.model_copy(
            update={"login_failures_per_minute": 3, "rate_limit_per_minute": 1, "rate_limit_burst": 2}
        )
    )
    sessions = context_of(tight).sessions
    with session_scope(sessions) as db:
        before = len(audit.list_(db, limit=1000, action="login.failure"))
    flooder = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    with TestClient(tight, client=PROXY) as client:
        stray = forwarded(world.stray_cert) | {"X-Forwarded-For": flooder}
        assert [client.get(COLLECTIONS, headers=stray).status_code for _ in range(5)] == [401] * 5
        assert client.get("/api/v1/partners", headers=stray).status_code == 401
        # Counted: a wrong key from that address is now refused before its hash.
        wrong = client.get(
            COLLECTIONS, headers=TAXII | {"X-Forwarded-For": flooder}, auth=("cred-x", "cred-x.no")
        )
        assert wrong.status_code == 429 and int(wrong.headers["Retry-After"]) >= 1
        bound = forwarded(world.bound_cert) | {"X-Forwarded-For": flooder}
        assert [client.get(COLLECTIONS, headers=bound).status_code for _ in range(3)] == [200, 200, 429]
    with session_scope(sessions) as db:
        assert len(audit.list_(db, limit=1000, action="login.failure")) == before + 3
        throttled = [e for e in audit.list_(db, limit=1000, action="login.throttled") if e.target == flooder]
        assert len(throttled) == 1
    context_of(tight).engine.dispose()
