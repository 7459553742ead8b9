"""Detached JWS over RFC 8785 bytes: the token's form, independent verification, envelope splicing."""

from __future__ import annotations

import base64
import json
import time

import orjson
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exchange.signing import (
    CTY_STIX,
    CTY_TAXII,
    KeyRing,
    attach_signature,
    canonical_bytes,
    canonical_envelope,
    sign_canonical,
    sign_detached,
)
from tests.signing import ISS, indicator, joserfc_verify, jwcrypto_verify


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    keyring = KeyRing(tmp_path_factory.mktemp("jws") / "signing")
    keyring.ensure()
    return keyring


def b64d(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def bundle(n: int = 3) -> dict:
    return {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [indicator(i) for i in range(n)],
    }


def test_token_is_compact_detached_with_the_designed_protected_header(ring):
    before = int(time.time())
    token = sign_detached(bundle(), key=ring.current(), cty=CTY_STIX, aud="cert-in", iss=ISS)
    protected, payload, signature = token.split(".")
    assert payload == "" and len(b64d(signature)) == 64
    assert "=" not in token
    header = json.loads(b64d(protected))
    assert list(header) == ["alg", "kid", "typ", "cty", "iat", "iss", "aud"]
    assert header == {
        "alg": "EdDSA",
        "kid": ring.current().kid,
        "typ": "JOSE",
        "cty": "stix+json;version=2.1",
        "iat": header["iat"],
        "iss": ISS,
        "aud": "cert-in",
    }
    assert isinstance(header["iat"], int) and before <= header["iat"] <= int(time.time())


def test_aud_is_left_out_when_there_is_no_audience(ring):
    token = sign_detached(bundle(), key=ring.current(), cty=CTY_TAXII, aud=None, iss=ISS)
    assert "aud" not in json.loads(b64d(token.split(".")[0]))


def test_an_unknown_content_type_is_refused(ring):
    with pytest.raises(ValueError, match="cty"):
        sign_detached(bundle(), key=ring.current(), cty="application/json", aud=None, iss=ISS)


def test_signing_input_is_the_rfc7515_one_over_base64url_canonical_bytes(ring):
    """Not RFC 7797: the bytes signed are b64url(header) '.' b64url(JCS payload)."""
    obj = bundle()
    token = sign_detached(obj, key=ring.current(), cty=CTY_STIX, aud="cert-in", iss=ISS)
    protected, _, signature = token.split(".")
    canonical = rfc8785.dumps(obj)
    x = ring.jwks()["keys"][0]["x"]
    public = Ed25519PublicKey.from_public_bytes(b64d(x))
    signing_input = protected.encode() + b"." + base64.urlsafe_b64encode(canonical).rstrip(b"=")
    public.verify(b64d(signature), signing_input)  # raises if not


@pytest.mark.parametrize("cty", [CTY_STIX, CTY_TAXII])
@pytest.mark.parametrize("verifier", [jwcrypto_verify, joserfc_verify], ids=["jwcrypto", "joserfc"])
def test_independent_jose_libraries_verify_with_the_published_jwks(ring, cty, verifier):
    obj = bundle(5)
    token = sign_detached(obj, key=ring.current(), cty=cty, aud="cert-in", iss=ISS)
    obj["x_exchange_jws"] = token  # as delivered: the partner removes it and canonicalises (RFC 8785)
    partner_bytes = rfc8785.dumps({k: v for k, v in obj.items() if k != "x_exchange_jws"})
    header = verifier(token, partner_bytes, ring.jwks())
    assert header["kid"] == ring.current().kid and header["cty"] == cty and header["aud"] == "cert-in"


def test_the_signature_member_is_not_part_of_what_is_signed():
    obj = bundle(1)
    assert canonical_bytes({**obj, "x_exchange_jws": "anything"}) == rfc8785.dumps(obj)
    assert canonical_bytes({**obj, "sig": "x"}, member="sig") == rfc8785.dumps(obj)


def test_a_served_envelope_with_the_attached_signature_verifies_independently(ring):
    texts = [rfc8785.dumps(indicator(i)).decode() for i in range(10)]
    canonical = canonical_envelope({"more": True, "next": "abc"}, texts)
    token = sign_canonical(canonical, key=ring.current(), cty=CTY_TAXII, aud="cert-in", iss=ISS)
    body = attach_signature(canonical, token)
    served = json.loads(body)
    assert served["x_exchange_jws"] == token and len(served["objects"]) == 10
    received = rfc8785.dumps({k: v for k, v in served.items() if k != "x_exchange_jws"})
    assert received == canonical
    jwcrypto_verify(token, received, ring.jwks())
    joserfc_verify(token, received, ring.jwks())
    assert json.loads(attach_signature(b"{}", token)) == {"x_exchange_jws": token}


# -- canonical_envelope == rfc8785.dumps of the parsed structure -------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
stix_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
extra_member_names = st.text(max_size=4).filter(
    lambda s: s not in ("objects", "x_exchange_jws", "more", "next")
)
envelope_members = st.fixed_dictionaries(
    {}, optional={"more": st.booleans(), "next": st.text(), "x_exchange_jws": st.text()}
).flatmap(
    lambda fixed: st.dictionaries(extra_member_names, json_values, max_size=2).map(
        lambda extra: {**extra, **fixed}
    )
)


@settings(max_examples=300, deadline=None)
@given(members=envelope_members, objects=st.lists(stix_objects, max_size=8))
@example(
    members={"more": False, "next": "\U0001f600", "\uffff": 1, "\U00010000": 2, "": 3},
    objects=[{"\u00e9": "\u2028"}],
)
def test_canonical_envelope_equals_rfc8785_of_the_parsed_structure(members, objects):
    texts = [rfc8785.dumps(obj).decode("utf-8") for obj in objects]
    expected_members = {k: v for k, v in members.items() if k != "x_exchange_jws"}
    assert canonical_envelope(members, texts) == rfc8785.dumps({**expected_members, "objects": objects})
    assert canonical_envelope(members, None) == rfc8785.dumps(expected_members)


def test_utf16_code_unit_order_not_code_point_order():
    # U+10000 is D800 DC00 in UTF-16, so it sorts before U+FFFF although its code point is higher.
    spliced = canonical_envelope({"\uffff": 1, "\U00010000": 2}, [])
    assert spliced == rfc8785.dumps({"\uffff": 1, "\U00010000": 2, "objects": []})
    assert spliced.index("\U00010000".encode()) < spliced.index("\uffff".encode())


def test_objects_cannot_be_passed_as_a_member():
    with pytest.raises(ValueError):
        canonical_envelope({"objects": []}, [])


# -- what signing a page costs -----------------------------------------------------------------


def _best_ms(fn, runs: int) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings) * 1000


def test_signing_a_1000_object_page_from_canonical_texts_beats_recanonicalising(ring, capsys):
    """The TAXII layer signs pages from stored canonical text; re-canonicalising would dominate."""
    objects = [indicator(i) for i in range(1000)]
    texts = [rfc8785.dumps(obj).decode() for obj in objects]  # as stored
    members = {"more": True, "next": "eyJjIjoiY3Vyc29yIn0"}
    key = ring.current()
    size = len(canonical_envelope(members, texts))
    assert 450_000 < size < 600_000

    build = _best_ms(lambda: canonical_envelope(members, texts), 30)
    canonical = canonical_envelope(members, texts)
    sign = _best_ms(lambda: sign_canonical(canonical, key=key, cty=CTY_TAXII, aud="cert-in", iss=ISS), 30)
    spliced_total = _best_ms(
        lambda: sign_canonical(
            canonical_envelope(members, texts), key=key, cty=CTY_TAXII, aud="cert-in", iss=ISS
        ),
        30,
    )
    rfc8785_parsed = _best_ms(lambda: rfc8785.dumps({**members, "objects": objects}), 5)
    rfc8785_from_text = _best_ms(
        lambda: rfc8785.dumps({**members, "objects": [orjson.loads(t) for t in texts]}), 5
    )
    serve = _best_ms(lambda: orjson.dumps({**members, "objects": [orjson.Fragment(t) for t in texts]}), 30)
    with capsys.disabled():
        print(
            f"\n1,000 indicators, {size / 1000:.0f} kB canonical envelope (best of runs):"
            f"\n  canonical_envelope (splice stored texts)   {build:7.2f} ms"
            f"\n  sign_canonical (b64url + Ed25519)          {sign:7.2f} ms"
            f"\n  splice + sign                              {spliced_total:7.2f} ms"
            f"\n  rfc8785.dumps of parsed objects            {rfc8785_parsed:7.2f} ms"
            f"\n  parse texts + rfc8785.dumps                {rfc8785_from_text:7.2f} ms"
            f"\n  (serving: orjson with Fragment, no signing {serve:7.2f} ms)"
        )
    assert spliced_total * 2 < rfc8785_from_text
