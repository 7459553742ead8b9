"""Observable values from analysts: detect, normalise, and turn into STIX patterns."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

HASH_LENGTHS = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-512": 128}
_HASH_TYPE = re.compile(r"^file:hashes\.'?(MD5|SHA-1|SHA-256|SHA-512)'?$", re.IGNORECASE)
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)([a-z0-9-]{1,63}(?<!-)\.)+[a-z][a-z0-9-]{0,62}(?<!-)$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
TYPES = (
    "ipv4-addr",
    "ipv6-addr",
    "domain-name",
    "url",
    "email-addr",
    "file:hashes.'MD5'",
    "file:hashes.'SHA-1'",
    "file:hashes.'SHA-256'",
    "file:hashes.'SHA-512'",
)


class ObservableError(ValueError):
    """An observable the exchange cannot turn into a pattern; the message says why."""


@dataclass(frozen=True)
class Observable:
    type: str  # as in TYPES
    value: str  # normalised

    @property
    def pattern(self) -> str:
        literal = self.value.replace("\\", "\\\\").replace("'", "\\'")
        if self.type.startswith("file:hashes."):
            algorithm = self.type.split(".", 1)[1].strip("'")
            return f"[file:hashes.'{algorithm}' = '{literal}']"
        return f"[{self.type}:value = '{literal}']"


# Addresses that name nothing outside their own network: a partner acting on one (blocking it)
# would cut into its own network. Documentation ranges (192.0.2.0/24, ...) stay usable.
_LOCAL_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 included
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, the broadcast address included
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible form (::10.0.0.1)
        "::ffff:0:0/96",  # IPv4-mapped: the IPv4 address is the indicator
        "64:ff9b::/96",  # NAT64 forms of IPv4 addresses
        "64:ff9b:1::/48",
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ...)
        "2002::/16",  # 6to4 forms of IPv4 addresses
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",
    )
)
# A block wider than this matches a large part of the Internet (0.0.0.0/0 all of it): never an
# indicator, whatever a feed says. Blocklists' widest entries are far narrower.
MIN_PREFIX = {4: 8, 6: 16}


def _ip(value: str, version: int) -> str:
    if "%" in value:
        raise ObservableError(
            f"{value!r} is a scoped address: its zone names an interface of one host, so it is not "
            "shared as an indicator"
        )
    try:
        network = ipaddress.ip_network(value, strict=False) if "/" in value else None
        if network is not None:
            if network.version != version:
                raise ValueError
        else:
            address = ipaddress.ip_address(value)
            if address.version != version:
                raise ValueError
            network = ipaddress.ip_network(address)
    except ValueError:
        raise ObservableError(f"{value!r} is not an IPv{version} address or CIDR block") from None
    if network.prefixlen < MIN_PREFIX[version]:
        raise ObservableError(
            f"{value!r} is wider than /{MIN_PREFIX[version]}: an indicator on it would match a large "
            "part of the Internet"
        )
    local = next((n for n in _LOCAL_NETWORKS if n.version == version and network.overlaps(n)), None)
    if local is not None:
        raise ObservableError(
            f"{value!r} is in {local} (private, loopback, link-local, multicast, reserved or other "
            "special-purpose range): it names nothing outside its own network, or an IPv4 address "
            "in another form, so it is not shared as an indicator"
        )
    return str(network.network_address) if "/" not in value else str(network)


def _domain(value: str) -> str:
    domain = value.strip().rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ObservableError(f"{value!r} is not a domain name") from None
    if not _DOMAIN.match(domain):
        raise ObservableError(f"{value!r} is not a domain name")
    return domain


def _url(value: str) -> str:
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018  (raises on a port that is not a number in 0-65535)
        hostname = parts.hostname
    except ValueError as exc:  # "http://[::1", "http://h:99999"
        raise ObservableError(f"{value!r} is not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https", "ftp", "ftps") or not hostname:
        raise ObservableError(f"{value!r} is not an absolute http(s) or ftp URL")
    netloc = parts.netloc.rsplit("@", 1)
    host = netloc[-1].lower()
    netloc_text = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    return urlunsplit((parts.scheme.lower(), netloc_text, parts.path or "/", parts.query, parts.fragment))


def normalise(kind: str, value: str) -> Observable:
    """An Observable with a canonical value, or ObservableError naming the problem."""
    if not isinstance(value, str) or not value.strip():
        raise ObservableError("the value is empty")
    value = value.strip()
    hash_type = _HASH_TYPE.match(kind)
    if hash_type:
        algorithm = hash_type.group(1).upper()
        digest = value.lower()
        if not re.fullmatch(r"[0-9a-f]+", digest) or len(digest) != HASH_LENGTHS[algorithm]:
            raise ObservableError(
                f"{value!r} is not a {algorithm} hash ({HASH_LENGTHS[algorithm]} hex digits)"
            )
        return Observable(f"file:hashes.'{algorithm}'", digest)
    if kind == "ipv4-addr":
        return Observable(kind, _ip(value, 4))
    if kind == "ipv6-addr":
        return Observable(kind, _ip(value, 6))
    if kind == "domain-name":
        return Observable(kind, _domain(value))
    if kind == "url":
        return Observable(kind, _url(value))
    if kind == "email-addr":
        if not _EMAIL.match(value):
            raise ObservableError(f"{value!r} is not an email address")
        local, domain = value.rsplit("@", 1)
        return Observable(kind, f"{local}@{_domain(domain)}")
    raise ObservableError(f"unknown observable type {kind!r}; expected one of {', '.join(TYPES)}")


def detect(value: str) -> Observable | None:
    """Guess the type of a bare value (for "have we seen this?"), normalised; None if unknown."""
    text = value.strip()
    candidates = ["ipv4-addr", "ipv6-addr", "url", "email-addr", "domain-name"]
    for algorithm, length in HASH_LENGTHS.items():
        if len(text) == length and re.fullmatch(r"[0-9a-fA-F]+", text):
            return Observable(f"file:hashes.'{algorithm}'", text.lower())
    for kind in candidates:
        try:
            return normalise(kind, text)
        except ObservableError:
            continue
    return None
