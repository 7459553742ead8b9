"""Verification: every tampering is caught, with its exact reason, here and by jwcrypto and joserfc."""

from __future__ import annotations

import base64
import copy
import json
from argparse import Namespace
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.cli.verify import cmd_verify
from exchange.config import Settings
from exchange.signing import (
    CTY_STIX,
    CTY_TAXII,
    KeyRing,
    SignatureError,
    attach_signature,
    canonical_bytes,
    canonical_envelope,
    load_jwks,
    sign_canonical,
    sign_detached,
    verify_detached,
    verify_file,
)
from exchange.signing.verify import JwksError
from tests.signing import ISS, indicator, joserfc_verify, jwcrypto_verify

VERIFIERS = [jwcrypto_verify, joserfc_verify]


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    keyring = KeyRing(tmp_path / "data" / "signing")
    keyring.ensure()
    return keyring


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def make_bundle() -> dict:
    return {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [indicator(i) for i in range(4)],
    }


def signed(ring: KeyRing, obj: dict, aud: str | None = "cert-in") -> dict:
    token = sign_detached(obj, key=ring.current(), cty=CTY_STIX, aud=aud, iss=ISS)
    return {**obj, "x_exchange_jws": token}


def reason(token: str, payload, jwks: dict, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(SignatureError) as caught:
        verify_detached(token, payload, jwks=jwks, **kwargs)
    return caught.value.reason


def independent_failures(token: str, payload: bytes, jwks: dict) -> list[str]:
    """Which independent verifiers accepted (should be none)."""
    accepted = []
    for verify in VERIFIERS:
        try:
            verify(token, payload, jwks)
        except Exception:  # any refusal is what we want
            continue
        accepted.append(verify.__name__)
    return accepted


def reheader(token: str, **changes) -> str:  # type: ignore[no-untyped-def]
    protected, payload, signature = token.split(".")
    header = json.loads(b64d(protected))
    header.update(changes)
    return f"{b64(json.dumps(header, separators=(',', ':')).encode())}.{payload}.{signature}"


def test_an_untouched_bundle_verifies_with_its_header(ring):
    doc = signed(ring, make_bundle())
    result = verify_detached(doc["x_exchange_jws"], doc, jwks=ring.jwks(), audience="cert-in")
    assert result.kid == ring.current().kid
    assert result.header["aud"] == "cert-in" and result.iss == ISS and result.cty == CTY_STIX


def test_changing_one_character_of_any_object_breaks_the_signature(ring):
    doc = signed(ring, make_bundle())
    token = doc["x_exchange_jws"]
    for index, _obj in enumerate(doc["objects"]):
        for prop in ("id", "name", "pattern", "modified"):
            tampered = copy.deepcopy(doc)
            value = tampered["objects"][index][prop]
            tampered["objects"][index][prop] = value[:-2] + chr(ord(value[-2]) ^ 1) + value[-1]
            assert reason(token, tampered, ring.jwks()) == "bad signature", (index, prop)
            assert independent_failures(token, canonical_bytes(tampered), ring.jwks()) == []
        tampered = copy.deepcopy(doc)
        tampered["objects"][index]["confidence"] = 81
        assert reason(token, tampered, ring.jwks()) == "bad signature"
        tampered = copy.deepcopy(doc)
        del tampered["objects"][index]
        assert reason(token, tampered, ring.jwks()) == "bad signature"


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_flipping_any_bit_of_the_signed_bytes_breaks_the_signature(tmp_path_factory, position, bit):
    keyring = KeyRing(tmp_path_factory.getbasetemp() / "flip" / "signing")
    keyring.ensure()
    canonical = rfc8785.dumps(make_bundle())
    token = sign_canonical(canonical, key=keyring.current(), cty=CTY_STIX, aud=None, iss=ISS)
    changed = bytearray(canonical)
    changed[position % len(changed)] ^= 1 << bit
    assert reason(token, bytes(changed), keyring.jwks()) == "bad signature"
    assert independent_failures(token, bytes(changed), keyring.jwks()) == []


@pytest.mark.parametrize(
    "changes", [{"aud": "cert-uk"}, {"iat": 1}, {"cty": CTY_TAXII}, {"iss": "identity--x"}, {"typ": "JWT"}]
)
def test_a_re_encoded_protected_header_breaks_the_signature(ring, changes):
    doc = signed(ring, make_bundle())
    forged = reheader(doc["x_exchange_jws"], **changes)
    assert reason(forged, doc, ring.jwks()) == "bad signature"
    assert independent_failures(forged, canonical_bytes(doc), ring.jwks()) == []


def test_a_header_re_encoded_with_other_whitespace_breaks_the_signature(ring):
    doc = signed(ring, make_bundle())
    protected, _, signature = doc["x_exchange_jws"].split(".")
    loose = b64(json.dumps(json.loads(b64d(protected))).encode())  # same members, ", " separators
    assert reason(f"{loose}..{signature}", doc, ring.jwks()) == "bad signature"


def test_a_signature_from_a_retired_then_removed_key_no_longer_verifies(ring):
    doc = signed(ring, make_bundle())
    old, _, _ = ring.rotate()
    assert verify_detached(doc["x_exchange_jws"], doc, jwks=ring.jwks()).kid == old
    for verify in VERIFIERS:
        verify(doc["x_exchange_jws"], canonical_bytes(doc), ring.jwks())
    ring.remove_retired(old)
    assert reason(doc["x_exchange_jws"], doc, ring.jwks()) == "unknown kid"
    assert independent_failures(doc["x_exchange_jws"], canonical_bytes(doc), ring.jwks()) == []


def test_a_kid_not_in_the_jwks_is_unknown(ring, tmp_path):
    other = KeyRing(tmp_path / "other")
    doc = {**make_bundle()}
    token = sign_detached(doc, key=other.ensure(), cty=CTY_STIX, aud=None, iss=ISS)
    assert reason(token, doc, ring.jwks()) == "unknown kid"
    assert reason(reheader(token, kid=ring.current().kid), doc, ring.jwks()) == "bad signature"
    assert reason(reheader(token, kid=None), doc, ring.jwks()) == "unknown kid"


def test_the_audience_must_match_when_asked_for(ring):
    doc = signed(ring, make_bundle(), aud="cert-in")
    assert reason(doc["x_exchange_jws"], doc, ring.jwks(), audience="cert-uk") == "audience mismatch"
    unaddressed = signed(ring, make_bundle(), aud=None)
    assert (
        reason(unaddressed["x_exchange_jws"], unaddressed, ring.jwks(), audience="cert-in")
        == "audience mismatch"
    )
    assert verify_detached(unaddressed["x_exchange_jws"], unaddressed, jwks=ring.jwks()).aud is None


@pytest.mark.parametrize("alg", ["HS256", "none", "RS256", "Ed25519", None])
def test_any_alg_but_eddsa_is_refused(ring, alg):
    doc = signed(ring, make_bundle())
    assert reason(reheader(doc["x_exchange_jws"], alg=alg), doc, ring.jwks()) == "alg not EdDSA"


def test_a_token_carrying_its_payload_is_not_detached(ring):
    doc = signed(ring, make_bundle())
    protected, _, signature = doc["x_exchange_jws"].split(".")
    attached = f"{protected}.{b64(canonical_bytes(doc))}.{signature}"
    assert reason(attached, doc, ring.jwks()) == "not detached"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a..b..c",
        "a.b.c.d",
        "!!..sig",
        "..sig",
        "eyJhbGciOiJFZERTQSJ9..",
        b64(b"not json") + "..AAAA",
        b64(b"[1]") + "..AAAA",
        b64(b'{"alg":"EdDSA","alg":"none"}') + "..AAAA",
        b64(b'{"alg":"EdDSA","kid":"k","crit":["exp"],"exp":1}') + "..AAAA",
        b64(b'{"alg":"EdDSA","kid":"k","b64":false}') + "..AAAA",
    ],
)
def test_malformed_tokens(ring, token):
    assert reason(token, make_bundle(), ring.jwks()) == "malformed token"


def test_the_exact_reason_is_kept_apart_from_the_detail(ring):
    doc = signed(ring, make_bundle())
    with pytest.raises(SignatureError) as caught:
        verify_detached(doc["x_exchange_jws"], doc, jwks=ring.jwks(), audience="cert-uk")
    assert caught.value.reason == "audience mismatch"
    assert caught.value.status == 422 and "cert-uk" in caught.value.message


# -- files ---------------------------------------------------------------------------------------


def test_verify_file_accepts_a_bundle_with_the_member(ring, tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(signed(ring, make_bundle()), indent=2))  # pretty-printed: still canonicalised
    assert verify_file(path, jwks=ring.jwks()).kid == ring.current().kid


def test_verify_file_accepts_a_saved_taxii_envelope(ring, tmp_path):
    texts = [rfc8785.dumps(indicator(i)).decode() for i in range(3)]
    canonical = canonical_envelope({"more": False}, texts)
    token = sign_canonical(canonical, key=ring.current(), cty=CTY_TAXII, aud="cert-in", iss=ISS)
    path = tmp_path / "page.json"
    path.write_bytes(attach_signature(canonical, token))
    result = verify_file(path, jwks=ring.jwks(), audience="cert-in")
    assert result.cty == CTY_TAXII and result.aud == "cert-in"


def test_verify_file_accepts_a_sidecar_and_checks_both_when_both_exist(ring, tmp_path):
    doc = make_bundle()
    path = tmp_path / "export.json"
    path.write_text(json.dumps(doc))
    Path(f"{path}.jws").write_text(
        sign_detached(doc, key=ring.current(), cty=CTY_STIX, aud=None, iss=ISS) + "\n"
    )
    assert verify_file(path, jwks=ring.jwks()).kid == ring.current().kid
    # A bundle carrying a good member but whose sidecar was made for other content fails.
    other = sign_detached(
        {**doc, "id": "bundle--00000000-0000-4000-8000-000000000000"},
        key=ring.current(),
        cty=CTY_STIX,
        aud=None,
        iss=ISS,
    )
    path.write_text(json.dumps(signed(ring, doc)))
    Path(f"{path}.jws").write_text(other)
    with pytest.raises(SignatureError) as caught:
        verify_file(path, jwks=ring.jwks())
    assert caught.value.reason == "bad signature"


def test_a_sidecar_signs_a_non_json_file_byte_for_byte(ring, tmp_path):
    path = tmp_path / "iocs.csv"
    path.write_bytes(b"value,type\n198.51.100.7,ipv4\n")
    Path(f"{path}.jws").write_text(
        sign_canonical(path.read_bytes(), key=ring.current(), cty=CTY_STIX, aud=None, iss=ISS)
    )
    assert verify_file(path, jwks=ring.jwks())
    path.write_bytes(b"value,type\n198.51.100.8,ipv4\n")
    with pytest.raises(SignatureError, match="bad signature"):
        verify_file(path, jwks=ring.jwks())


def test_a_sidecar_named_on_its_own_verifies_the_file_beside_it(ring, tmp_path):
    doc = make_bundle()
    path = tmp_path / "export.json"
    path.write_text(json.dumps(doc))  # no member: the strictly valid form
    sidecar = Path(f"{path}.jws")
    sidecar.write_text(sign_detached(doc, key=ring.current(), cty=CTY_STIX, aud="cert-in", iss=ISS) + "\n")
    assert verify_file(sidecar, jwks=ring.jwks(), audience="cert-in").kid == ring.current().kid
    path.write_text(json.dumps({**doc, "objects": doc["objects"][1:]}))
    with pytest.raises(SignatureError) as caught:
        verify_file(sidecar, jwks=ring.jwks())
    assert caught.value.reason == "bad signature"
    path.unlink()
    with pytest.raises(SignatureError) as caught:
        verify_file(sidecar, jwks=ring.jwks())
    assert caught.value.reason == "not signed" and "export.json, is not beside it" in str(caught.value)


def test_an_unsigned_file_says_so(ring, tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(make_bundle()))
    with pytest.raises(SignatureError) as caught:
        verify_file(path, jwks=ring.jwks())
    assert caught.value.reason == "not signed"


def test_load_jwks_from_a_file_and_refusals(ring, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(ring.jwks()))
    assert load_jwks(str(path)) == ring.jwks()
    path.write_text('{"kty": "OKP"}')
    with pytest.raises(JwksError, match="not a JWK Set"):
        load_jwks(str(path))
    with pytest.raises(JwksError, match="cannot read"):
        load_jwks(str(tmp_path / "missing.json"))
    with pytest.raises(JwksError, match="cannot fetch"):
        load_jwks("http://127.0.0.1:9/.well-known/jwks.json", timeout=2)


# -- `exchange verify` ---------------------------------------------------------------------------


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=None, environment="development")


def test_cli_verify_prints_ok_or_the_exact_failure(ring, tmp_path, capsys):
    settings = _settings(tmp_path)  # its keyring is `ring`: <data_dir>/signing
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(signed(ring, make_bundle())))
    assert cmd_verify(Namespace(file=str(path), jwks=None), settings) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: signed by kid {ring.current().kid} (EdDSA), iat ") and "aud cert-in" in out

    jwks_file = tmp_path / "partner-view.json"
    jwks_file.write_text(json.dumps(ring.jwks()))
    assert cmd_verify(Namespace(file=str(path), jwks=str(jwks_file), audience="cert-in"), settings) == 0
    capsys.readouterr()
    assert cmd_verify(Namespace(file=str(path), jwks=str(jwks_file), audience="cert-uk"), settings) == 1
    assert capsys.readouterr().out == "FAILED: audience mismatch\n"

    sidecar = Path(f"{path}.jws")
    sidecar.write_text(json.loads(path.read_text())["x_exchange_jws"])
    assert cmd_verify(Namespace(file=str(sidecar), jwks=None), settings) == 0
    assert capsys.readouterr().out.startswith("OK: signed by kid")
    sidecar.unlink()

    doc = json.loads(path.read_text())
    doc["objects"][0]["name"] = "C2 server X"
    path.write_text(json.dumps(doc))
    assert cmd_verify(Namespace(file=str(path), jwks=None, json=True), settings) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "bad signature"
