"""Who the client is: the TCP peer, unless the peer is a reverse proxy the exchange trusts.

X-Forwarded-For is believed only from `EXCHANGE_TRUSTED_PROXIES`: anyone else can write any
address in it. From a trusted proxy, the client is the right-most address in the header that is
not itself a trusted proxy (the left-most entries are whatever the client sent).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def client_address(peer: str | None, forwarded_for: Sequence[str], networks: Sequence[Network]) -> str | None:
    """The client's address for a request from `peer` carrying these X-Forwarded-For values."""
    if peer is None or not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a garbled header: count the request against the proxy itself
        if not _trusted(hop, networks):
            return hop
    return peer
