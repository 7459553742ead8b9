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


def _ip(value: str, version: int) -> str:
    try:
        network = ipaddress.ip_network(value, strict=False) if "/" in value else None
        if network is not None:
            if network.version != version:
                raise ValueError
            return str(network)
        address = ipaddress.ip_address(value)
        if address.version != version:
            raise ValueError
        return str(address)
    except ValueError:
        raise ObservableError(f"{value!r} is not an IPv{version} address or CIDR block") from None


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
