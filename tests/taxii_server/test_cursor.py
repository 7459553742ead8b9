from __future__ import annotations

import pytest

from exchange.errors import InvalidCursorError
from taxii_server.cursor import Cursor, CursorCodec


def test_round_trip():
    codec = CursorCodec(b"secret")
    cursor = Cursor("cred-1", "coll", "objects", {"match[type]": ["indicator"]}, 123456)
    assert codec.decode(codec.encode(cursor)) == cursor


@pytest.mark.parametrize("token", ["", ".", "a.b", "x" * 5000, "!!!.???", "a.b.c"])
def test_garbage_is_refused(token):
    with pytest.raises(InvalidCursorError):
        CursorCodec(b"secret").decode(token)


def test_other_secret_is_refused():
    token = CursorCodec(b"one").encode(Cursor("c", "k", "objects", {}, 1))
    with pytest.raises(InvalidCursorError):
        CursorCodec(b"two").decode(token)


def test_every_single_character_change_is_detected():
    codec = CursorCodec(b"secret")
    token = codec.encode(Cursor("cred-1", "coll", "objects", {}, 42))
    for i, char in enumerate(token):
        if char == ".":
            continue
        replacement = "A" if char != "A" else "B"
        with pytest.raises(InvalidCursorError):
            codec.decode(token[:i] + replacement + token[i + 1 :])
