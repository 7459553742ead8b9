"""Opaque, tamper-proof, stateless `next` cursors (keyset positions signed with HMAC).

A cursor carries who asked, where, with which filters, and the position reached, so any API
worker can answer the next page and nobody can replay it elsewhere or with other filters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from exchange.errors import InvalidCursorError

_MAX_CURSOR = 4096


@dataclass(frozen=True)
class Cursor:
    caller: str
    collection: str
    endpoint: str
    filters: dict[str, Any]
    position: Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"taxii-next-cursor\x00" + secret).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:18]

    def encode(self, cursor: Cursor) -> str:
        payload = orjson.dumps(
            [1, cursor.caller, cursor.collection, cursor.endpoint, cursor.filters, cursor.position],
            option=orjson.OPT_SORT_KEYS,
        )
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, token: str) -> Cursor:
        """The cursor in `token`, or InvalidCursorError when it is garbage or was altered."""
        if not token or len(token) > _MAX_CURSOR or token.count(".") != 1:
            raise InvalidCursorError("the 'next' value is not a cursor this server issued")
        body, mac = token.split(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (ValueError, TypeError):
            raise InvalidCursorError("the 'next' value is not a cursor this server issued") from None
        if not hmac.compare_digest(self._mac(payload), given):
            raise InvalidCursorError("the 'next' value is not a cursor this server issued")
        try:
            version, caller, collection, endpoint, filters, position = orjson.loads(payload)
        except (ValueError, TypeError):
            raise InvalidCursorError("the 'next' value is not a cursor this server issued") from None
        if version != 1:
            raise InvalidCursorError("the 'next' cursor is from an older server; start again")
        return Cursor(caller, collection, endpoint, filters, position)
