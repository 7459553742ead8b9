"""The Ed25519 keyring: files and permissions, rotation, removal, concurrency, the JWKS endpoint."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jwcrypto import jwk as jwcrypto_jwk

from exchange.auth.keys import VerifiedKeyCache
from exchange.cli.signing import cmd_signing_key_jwks, cmd_signing_key_rotate
from exchange.config import Settings
from exchange.context import AppContext
from exchange.database.core import make_engine, make_session_factory
from exchange.errors import ConflictError, NotFoundError
from exchange.signing import CTY_STIX, KeyRing, sign_detached, verify_detached
from exchange.signing.keys import InsecureKeyFileError, KeyRingError
from exchange.signing.routes import router
from exchange.signing.verify import load_jwks
from tests.signing import ISS, jwcrypto_verify
from tests.support.taxii import free_port, start_uvicorn

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    keyring = KeyRing(tmp_path / "data" / "signing")
    keyring.ensure()
    return keyring


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def states(keyring: KeyRing) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {"current": [], "next": [], "retired": []}
    for info in keyring.keys():
        result[info.state].append(info.kid)
    return result


def test_ensure_creates_a_current_and_a_next_key_once(tmp_path):
    keyring = KeyRing(tmp_path / "signing")
    first = keyring.ensure()
    again = KeyRing(tmp_path / "signing").ensure()
    assert again.kid == first.kid
    found = states(keyring)
    assert found["current"] == [first.kid] and len(found["next"]) == 1 and found["retired"] == []
    assert sorted(p.name for p in (tmp_path / "signing").glob("*.pem")) == sorted(
        f"{kid}.pem" for kid in found["current"] + found["next"]
    )


def test_private_keys_are_owner_only_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        keyring = KeyRing(tmp_path / "signing")
        keyring.ensure()
    finally:
        os.umask(old)
    assert mode(tmp_path / "signing") == 0o700
    pems = list((tmp_path / "signing").glob("*.pem"))
    assert len(pems) == 2 and all(mode(p) == 0o600 for p in pems)
    assert pems[0].read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted


def test_a_pre_existing_wider_directory_is_narrowed_to_owner_only(tmp_path):
    directory = tmp_path / "signing"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    KeyRing(directory).ensure()
    assert mode(directory) == 0o700


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o644, 0o620])
def test_a_private_key_file_others_can_access_is_refused(ring, loose):
    kid = ring.current().kid
    path = ring.directory / f"{kid}.pem"
    os.chmod(path, loose)
    with pytest.raises(InsecureKeyFileError) as caught:
        KeyRing(ring.directory).current()  # a fresh process's view: nothing cached
    message = str(caught.value)
    assert str(path) in message and "chmod 600" in message


def test_owner_only_modes_stricter_than_0600_are_accepted(ring):
    kid = ring.current().kid
    os.chmod(ring.directory / f"{kid}.pem", 0o400)
    assert KeyRing(ring.directory).current().kid == kid


def test_kid_is_the_rfc7638_thumbprint_an_independent_library_computes(ring):
    for published in ring.jwks()["keys"]:
        key = jwcrypto_jwk.JWK(**{k: published[k] for k in ("kty", "crv", "x")})
        assert published["kid"] == key.thumbprint()


def test_jwks_publishes_public_members_only(ring):
    keys = ring.jwks()["keys"]
    assert [set(k) for k in keys] == [{"kty", "crv", "x", "kid", "use", "alg"}] * 2
    assert all(
        k["kty"] == "OKP" and k["crv"] == "Ed25519" and k["use"] == "sig" and k["alg"] == "EdDSA"
        for k in keys
    )
    assert keys[0]["kid"] == ring.current().kid
    metadata = json.loads((ring.directory / "keyring.json").read_text())
    assert all("d" not in entry for entry in metadata["keys"])


def test_key_material_stays_out_of_repr(ring):
    key = ring.current()
    pem = (ring.directory / f"{key.kid}.pem").read_text()
    assert "private_key" not in repr(key) and pem.splitlines()[1] not in repr(key)


def test_rotation_promotes_the_pre_published_key_and_keeps_the_old_one_published(ring):
    before = states(ring)
    old, current, upcoming = ring.rotate()
    assert old == before["current"][0] and current == before["next"][0]
    assert ring.current().kid == current
    after = states(ring)
    assert after == {"current": [current], "next": [upcoming], "retired": [old]}
    published = [k["kid"] for k in ring.jwks()["keys"]]
    assert published == [current, upcoming, old]
    info = {k.kid: k for k in ring.keys()}
    assert info[old].retired and info[current].activated and info[upcoming].activated is None


def test_a_signature_made_before_rotation_still_verifies_until_the_key_is_removed(ring):
    bundle = {"type": "bundle", "id": "bundle--6b1b3a2c-5f0e-4b8e-9a37-0d6f0e0f2a11", "objects": []}
    token = sign_detached(bundle, key=ring.current(), cty=CTY_STIX, aud=None, iss=ISS)
    old, _, _ = ring.rotate()
    assert verify_detached(token, bundle, jwks=ring.jwks()).kid == old
    ring.remove_retired(old)
    assert old not in [k["kid"] for k in ring.jwks()["keys"]]
    assert not (ring.directory / f"{old}.pem").exists()


def test_only_retired_keys_can_be_removed(ring):
    with pytest.raises(ConflictError):
        ring.remove_retired(ring.current().kid)
    with pytest.raises(NotFoundError):
        ring.remove_retired("no-such-kid")
    assert len(ring.jwks()["keys"]) == 2


def test_a_tampered_keyring_file_is_refused(ring):
    path = ring.directory / "keyring.json"
    data = json.loads(path.read_text())
    data["keys"][1]["x"] = data["keys"][0]["x"]  # a kid now names someone else's public key
    path.write_text(json.dumps(data))
    with pytest.raises(KeyRingError, match="does not match"):
        KeyRing(ring.directory).jwks()


def test_a_private_key_file_swapped_for_another_key_is_refused(ring):
    current = ring.current().kid
    upcoming = states(ring)["next"][0]
    (ring.directory / f"{current}.pem").write_bytes((ring.directory / f"{upcoming}.pem").read_bytes())
    with pytest.raises(KeyRingError, match="does not hold"):
        KeyRing(ring.directory).current()


def test_a_rotation_by_another_process_is_seen_without_restart(ring):
    serving = KeyRing(ring.directory)  # an API worker's long-lived keyring
    before = serving.current().kid
    _, current, _ = KeyRing(ring.directory).rotate()  # the scheduler's or the CLI's
    assert serving.current().kid == current != before
    # Several changes within one timestamp tick are all seen.
    other = KeyRing(ring.directory)
    for _ in range(3):
        retired, current, upcoming = other.rotate()
        other.remove_retired(retired)
        assert serving.current().kid == current
        published = [k["kid"] for k in serving.jwks()["keys"]]
        assert published[:2] == [current, upcoming] and retired not in published


_ENSURE = """
import sys, time
from pathlib import Path
from exchange.signing.keys import KeyRing
directory, go, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.0005)
print(KeyRing(directory).ensure().kid)
"""


def test_concurrent_ensure_from_several_processes_makes_one_current_key(tmp_path):
    for round_ in range(4):
        directory, go = tmp_path / f"ring{round_}" / "signing", tmp_path / f"go{round_}"
        readies = [tmp_path / f"ready{round_}-{i}" for i in range(4)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _ENSURE, str(directory), str(go), str(ready)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for ready in readies
        ]
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.005)
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
        kids = {out.strip() for out, _ in outputs}
        keyring = KeyRing(directory)
        assert kids == {keyring.current().kid}
        found = states(keyring)
        assert len(found["current"]) == 1 and len(found["next"]) == 1
        assert len(list(directory.glob("*.pem"))) == 2  # no losing key left behind


def _app(keyring: KeyRing) -> FastAPI:
    app = FastAPI()
    engine = make_engine("sqlite://")
    AppContext(Settings(), engine, make_session_factory(engine), keyring, VerifiedKeyCache(1)).install(app)
    app.include_router(router)
    return app


def test_the_jwks_endpoint_serves_the_keyring_with_a_cache_lifetime(ring):
    with TestClient(_app(ring)) as client:
        response = client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "max-age=300"
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == ring.jwks()
        ring.rotate()
        assert len(client.get("/.well-known/jwks.json").json()["keys"]) == 3


def test_a_partner_verifies_with_the_jwks_fetched_over_http(ring):
    bundle = {"type": "bundle", "id": "bundle--0b4b1c3e-8d5f-4a51-9c1e-3a6b7c8d9e0f", "objects": []}
    token = sign_detached(bundle, key=ring.current(), cty=CTY_STIX, aud="cert-in", iss=ISS)
    port = free_port()
    server, thread = start_uvicorn(_app(ring), port)
    try:
        jwks = load_jwks(f"http://127.0.0.1:{port}/.well-known/jwks.json")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert jwks == ring.jwks()
    assert (
        jwcrypto_verify(
            token, b'{"id":"bundle--0b4b1c3e-8d5f-4a51-9c1e-3a6b7c8d9e0f","objects":[],"type":"bundle"}', jwks
        )["aud"]
        == "cert-in"
    )


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=None, environment="development")


def test_cli_rotate_rotates_and_records_an_audit_event(tmp_path, capsys):
    from argparse import Namespace

    from exchange.audit import service as audit
    from exchange.bootstrap import migrate
    from exchange.database.core import make_engine, make_session_factory, session_scope

    settings = _settings(tmp_path)
    keyring = KeyRing(settings.data_dir / "signing")
    first = keyring.ensure().kid
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)  # what `exchange init` does; rotate records its audit event in the database
    engine.dispose()
    assert cmd_signing_key_rotate(Namespace(json=True), settings) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["retired"] == first and keyring.current().kid == printed["current"]
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with session_scope(make_session_factory(engine)) as db:
            events = audit.list_(db, action="signing.key.rotate")
    finally:
        engine.dispose()
    assert [e.target for e in events] == [printed["current"]]
    assert cmd_signing_key_jwks(Namespace(), settings) == 0
    assert [k["kid"] for k in json.loads(capsys.readouterr().out)["keys"]][-1] == first
