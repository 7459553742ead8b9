"""Partner client certificates, verified by the TLS-terminating proxy and forwarded to us.

The proxy (nginx: `ssl_verify_client optional`) checks a partner's certificate against the CA it
is given and passes the verified certificate on in `X-Client-Cert` (URL-encoded PEM,
`$ssl_client_escaped_cert`) with `X-Client-Verify: SUCCESS`. Those headers are believed only
from the addresses in EXCHANGE_TRUSTED_PROXIES; from anyone else they are ignored, so a caller
that reaches the API directly cannot claim a certificate it does not hold.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import unquote

CERT_HEADER = "x-client-cert"
VERIFY_HEADER = "x-client-verify"
MAX_CERT_CHARS = 16_384

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class HeaderLookup(Protocol):
    """Request headers, looked up without regard to case (Starlette's and Werkzeug's both)."""

    def get(self, key: str, default: str) -> str: ...


def parse_networks(text: str) -> list[Network]:
    """Comma-separated addresses or CIDR ranges; ValueError naming the bad entry."""
    networks: list[Network] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"EXCHANGE_TRUSTED_PROXIES: {part!r} is not an address or CIDR range") from None
    return networks


def fingerprint(pem: str | bytes) -> str:
    """The SHA-256 fingerprint (lower-case hex) of a PEM certificate's DER bytes; ValueError if none."""
    # Here, not at the top: settings parse the trusted proxies with this module, and every
    # command reads settings (the CLI starts fast).
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ValueError("not a PEM X.509 certificate") from None
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def normalise_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as given by openssl (AB:CD:...) or as hex; ValueError otherwise."""
    value = text.replace(":", "").strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError("a SHA-256 fingerprint is 64 hex digits (colons allowed)")
    return value


def forwarded_fingerprint(headers: HeaderLookup, peer: str | None, trusted: Sequence[Network]) -> str | None:
    """The fingerprint of the client certificate the proxy verified, or None.

    None when the request did not come from a trusted proxy (whatever its headers say), when the
    proxy verified no certificate, or when what it forwarded is not a certificate.
    """
    if not trusted or not peer:
        return None
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return None
    if not any(address in network for network in trusted):
        return None
    if headers.get(VERIFY_HEADER, "") != "SUCCESS":
        return None
    escaped = headers.get(CERT_HEADER, "")
    if not escaped or len(escaped) > MAX_CERT_CHARS:
        return None
    try:
        return fingerprint(unquote(escaped))
    except ValueError:
        return None


# Where the edge middleware keeps the TCP peer when it takes the client address from X-Forwarded-For.
PEER_KEY = "exchange.peer"


def tcp_peer(scope: Mapping[str, Any], client_host: str | None) -> str | None:
    """The TCP peer of a request: `client_host`, unless the edge middleware replaced the client
    with the address a trusted proxy forwarded (then the proxy, kept under PEER_KEY)."""
    peer = scope.get(PEER_KEY)
    return peer if isinstance(peer, str) else client_host
