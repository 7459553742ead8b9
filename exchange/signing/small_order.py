"""Whether an Ed25519 public key is a point of small order (RFC 8032 arithmetic, no secrets).

Such a "key" (the identity point, say: x = "AQAAAA...") verifies a forged signature over any
message under cofactored verification rules, and OpenSSL's `from_public_bytes` accepts it. No
real key is one: a partner or peer offering one is refused. The test multiplies the point by the
cofactor 8 and checks for the identity, with the formulas of RFC 8032 sections 5.1.3 and 5.1.4.
"""

from __future__ import annotations

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)


def _decode(raw: bytes) -> _Point | None:
    """The point `raw` encodes, or None when it encodes none (RFC 8032 section 5.1.3)."""
    if len(raw) != 32:
        return None
    number = int.from_bytes(raw, "little")
    sign, y = number >> 255, number & ((1 << 255) - 1)
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P != 0:
        x = x * _SQRT_M1 % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y, 1, x * y % _P


def _double(point: _Point) -> _Point:
    x1, y1, z1, t1 = point
    a = (y1 - x1) * (y1 - x1) % _P
    b = (y1 + x1) * (y1 + x1) % _P
    c = 2 * t1 * t1 * _D % _P
    d = 2 * z1 * z1 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def has_small_order(raw: bytes) -> bool:
    """Whether the 32 bytes `raw` encode a point of order 1, 2, 4 or 8 (or no point at all)."""
    point = _decode(raw)
    if point is None:
        return True
    for _ in range(3):
        point = _double(point)
    x, y, z, _t = point
    return x % _P == 0 and (y - z) % _P == 0
