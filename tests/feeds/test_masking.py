"""Masking what a remote server echoes: every form in which the exchange sends a credential."""

from __future__ import annotations

import base64

from feeds.masking import credential_forms, mask_remote

USER, PASSWORD, QUERY_KEY = "pushuser", "pw+SECRET/0123456789", "q5ECRET+abcdef0123"


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_no_part_of(secrets: list[str], text: str) -> None:
    for secret in secrets:
        leaked = [secret[i : i + 8] for i in range(len(secret) - 7) if secret[i : i + 8] in text]
        assert not leaked, f"part of a credential shown: {leaked[:3]} in {text!r}"


def test_masking_covers_every_form_a_credential_goes_out_in() -> None:
    auth = {"username": USER, "password": PASSWORD}
    forms = credential_forms(auth, f"https://h/c/?apikey={QUERY_KEY.replace('+', '%2B')}&p=ab")
    said = (
        f"Authorization=Basic {_basic(USER, PASSWORD)} user={USER}:{PASSWORD} "
        f"url=/c/?apikey={QUERY_KEY.replace('+', '%2B')}&p=ab decoded={QUERY_KEY} "
        f"unpadded={_basic(USER, PASSWORD).rstrip('=')} other: Bearer abcdefgh12345 labs"
    )
    masked = mask_remote(said, forms)
    assert_no_part_of([PASSWORD, _basic(USER, PASSWORD), QUERY_KEY, "abcdefgh12345"], masked)
    assert "&p=***" in masked and "labs" in masked  # a short value only where it stands alone
