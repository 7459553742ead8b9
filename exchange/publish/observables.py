"""Observable values an analyst types in, normalised and turned into STIX 2.1 patterns.

Pure module (standard library and stix2-patterns): the same value always gives the same
pattern, so the deterministic indicator id derived from it is stable across publishes.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from stix2patterns.validator import run_validator

# STIX 2.1 hash-algorithm-ov names and their hex lengths.
HASH_LENGTHS: dict[str, int] = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-512": 128}
_HASH_BY_LENGTH = {length: name for name, length in HASH_LENGTHS.items()}
_HASH_ALIASES = {
    "md5": "MD5", "sha1": "SHA-1", "sha-1": "SHA-1", "sha256": "SHA-256", "sha-256": "SHA-256",
    "sha512": "SHA-512", "sha-512": "SHA-512",
}
_HASH_TYPE = re.compile(r"""file:hashes\.(?:'([^']+)'|"([^"]+)"|([A-Za-z0-9-]+))""")

VALUE_TYPES = ("domain-name", "ipv4-addr", "ipv6-addr", "url", "email-addr")
TYPES: tuple[str, ...] = (*VALUE_TYPES, *(f"file:hashes.'{name}'" for name in HASH_LENGTHS))
PATTERN = "pattern"  # the kind of an analyst's raw STIX pattern
MAX_PATTERN_LENGTH = 20_000

_LABELS = {
    "domain-name": "Domain", "ipv4-addr": "IPv4", "ipv6-addr": "IPv6", "url": "URL",
    "email-addr": "Email address",
}
_DNS_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_HEX = re.compile(r"[0-9a-f]+")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


class ObservableError(ValueError):
    """A value that is not what its type says, or an unknown type (message names the problem)."""


@dataclass(frozen=True)
class Observable:
    """A normalised observable and the STIX pattern that matches it."""

    kind: str  # one of TYPES, or "pattern"
    value: str  # the normalised value; for a raw pattern, the pattern
    pattern: str
    label: str  # "Domain login-secure-bank.top", for indicator names


def canonical_type(name: str) -> str:
    """The canonical observable type for what an analyst wrote ("sha256" -> file:hashes.'SHA-256')."""
    text = name.strip() if isinstance(name, str) else ""
    lowered = text.lower()
    if lowered in VALUE_TYPES:
        return lowered
    if lowered in _HASH_ALIASES:
        return f"file:hashes.'{_HASH_ALIASES[lowered]}'"
    match = _HASH_TYPE.fullmatch(text)
    if match:
        algorithm = next(g for g in match.groups() if g is not None)
        canonical = _HASH_ALIASES.get(algorithm.lower())
        if canonical:
            return f"file:hashes.'{canonical}'"
        raise ObservableError(
            f"unknown hash algorithm {algorithm!r}; use one of {', '.join(HASH_LENGTHS)}"
        )
    raise ObservableError(f"unknown observable type {name!r}; use one of {', '.join(TYPES)}, "
                          "or give a STIX 'pattern' instead")


def normalise(kind: str, value: str) -> Observable:
    """Check `value` as an observable of `kind` and build its pattern."""
    kind = canonical_type(kind)
    if not isinstance(value, str) or not value.strip():
        raise ObservableError("the value is empty")
    if kind == "domain-name":
        return _observable(kind, domain(value))
    if kind in ("ipv4-addr", "ipv6-addr"):
        return _ip_observable(value, 4 if kind == "ipv4-addr" else 6)
    if kind == "url":
        return _observable(kind, url(value))
    if kind == "email-addr":
        return _observable(kind, email(value))
    algorithm = kind[len("file:hashes.'"):-1]
    digest = file_hash(algorithm, value)
    return Observable(kind, digest, f"[{kind} = {literal(digest)}]", f"{algorithm} {digest}")


def from_pattern(pattern: str) -> Observable:
    """An analyst's own STIX 2.1 pattern, checked with stix2-patterns."""
    text = pattern.strip() if isinstance(pattern, str) else ""
    if not text:
        raise ObservableError("the pattern is empty")
    if len(text) > MAX_PATTERN_LENGTH:
        raise ObservableError(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
    errors = run_validator(text, stix_version="2.1")
    if errors:
        raise ObservableError(f"not a valid STIX 2.1 pattern: {errors[0]}")
    return Observable(PATTERN, text, text, f"Pattern {text if len(text) <= 120 else text[:117] + '...'}")


def detect(value: str) -> Observable:
    """Guess the type of a bare value (IP or CIDR, URL, email, hash, domain) and normalise it."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ObservableError("the value is empty")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        network = None
    if network is not None:
        return _ip_observable(text, network.version)
    if "://" in text:
        return normalise("url", text)
    if "@" in text:
        return normalise("email-addr", text)
    digest = text.lower()
    if _HEX.fullmatch(digest) and len(digest) in _HASH_BY_LENGTH:
        return normalise(f"file:hashes.'{_HASH_BY_LENGTH[len(digest)]}'", digest)
    try:
        return normalise("domain-name", text)
    except ObservableError:
        raise ObservableError(
            f"{value!r} is not an IP address or CIDR, URL, email address, domain name, or "
            "MD5/SHA-1/SHA-256/SHA-512 hash"
        ) from None


def literal(value: str) -> str:
    """A STIX pattern string literal: quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def needles(observable: Observable) -> list[tuple[str, str]]:
    """Text that a pattern mentioning the observable contains, with how it matches.

    "exact": the value as a pattern literal; "network": a CIDR literal containing the address;
    "url-host", "email-domain", "subdomain": the domain inside a URL, an address or a longer name.
    """
    if observable.kind == PATTERN:
        return [(observable.pattern, "exact")]
    found = [(literal(observable.value), "exact")]
    if observable.kind in ("ipv4-addr", "ipv6-addr") and "/" not in observable.value:
        address = ipaddress.ip_address(observable.value)
        # Prefixes analysts really publish; every IPv6 prefix would be 128 scans of the text.
        lengths = range(8, 32) if address.version == 4 else range(16, 128, 4)
        for length in lengths:
            network = ipaddress.ip_network(f"{address}/{length}", strict=False)
            found.append((literal(str(network)), "network"))
    if observable.kind == "domain-name":
        name = observable.value
        found += [(f"://{name}/", "url-host"), (f"://{name}'", "url-host"), (f"://{name}:", "url-host"),
                  (f"@{name}'", "email-domain"), (f".{name}'", "subdomain")]
    return found


def json_text(fragment: str) -> str:
    """How `fragment` appears inside a JSON string in stored (RFC 8785) text."""
    return json.dumps(fragment, ensure_ascii=False)[1:-1]


# ---- one function per value kind -------------------------------------------------------------

def domain(value: str) -> str:
    """Lowercase, without the trailing dot, IDNs in their ASCII (punycode) form."""
    text = value.strip().lower()
    text = text[:-1] if text.endswith(".") else text
    if not text:
        raise ObservableError("the domain name is empty")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            raise ObservableError(f"{value!r} is not a valid internationalised domain name") from None
    labels = text.split(".")
    if len(text) > 253:
        raise ObservableError(f"{value!r} is longer than 253 characters")
    if len(labels) < 2:
        raise ObservableError(f"{value!r} is not a fully qualified domain name (e.g. example.org)")
    bad = next((label for label in labels if not _DNS_LABEL.fullmatch(label)), None)
    if bad is not None:
        raise ObservableError(f"{value!r} is not a valid domain name: label {bad!r} "
                              "(letters, digits, '-' or '_', at most 63, not starting or ending with '-')")
    if labels[-1].isdigit():
        raise ObservableError(f"{value!r} looks like an IP address, not a domain name")
    return text


def ip(value: str, version: int) -> str:
    """An address or CIDR network in ipaddress's canonical text; /32 and /128 become addresses."""
    text = value.strip()
    if "%" in text:
        raise ObservableError(f"{value!r}: a zone index ('%...') is not allowed")
    try:
        parsed: ipaddress.IPv4Network | ipaddress.IPv6Network | ipaddress.IPv4Address | ipaddress.IPv6Address
        parsed = ipaddress.ip_network(text, strict=True) if "/" in text else ipaddress.ip_address(text)
    except ValueError:
        if "/" in text:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                pass
            else:
                raise ObservableError(f"{value!r} has host bits set; the network is {network}") from None
        raise ObservableError(f"{value!r} is not a valid IPv{version} address or CIDR network") from None
    if parsed.version != version:
        raise ObservableError(f"{value!r} is an IPv{parsed.version} value, not IPv{version} "
                              f"(use ipv{parsed.version}-addr)")
    if isinstance(parsed, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        if parsed.prefixlen == parsed.max_prefixlen:
            return str(parsed.network_address)
    return str(parsed)


def url(value: str) -> str:
    """Scheme and host lowercased; path, query and fragment kept as given."""
    text = value.strip()
    if not text or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ObservableError(f"{value!r} is not a URL: it is empty or contains spaces or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise ObservableError(f"{value!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme) or not parts.netloc or not parts.hostname:
        raise ObservableError(f"{value!r} is not an absolute URL with a host (e.g. http://example.org/path)")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    return urlunsplit((scheme, userinfo + at + hostport.lower(), parts.path, parts.query, parts.fragment))


def email(value: str) -> str:
    """local@domain, all lowercase (mailbox matching in practice ignores case)."""
    text = value.strip()
    local, at, host = text.rpartition("@")
    if not at or not local or not host:
        raise ObservableError(f"{value!r} is not an email address (local@domain)")
    if "@" in local or any(ch.isspace() or ord(ch) < 0x20 for ch in local) or len(local) > 64:
        raise ObservableError(f"{value!r} is not an email address: bad local part {local!r}")
    try:
        host = domain(host)
    except ObservableError as exc:
        raise ObservableError(f"{value!r} is not an email address: {exc}") from None
    return f"{local.lower()}@{host}"


def file_hash(algorithm: str, value: str) -> str:
    """A lowercase hex digest of exactly the algorithm's length."""
    text = value.strip().lower()
    if not _HEX.fullmatch(text):
        raise ObservableError(f"{value!r} is not a hexadecimal {algorithm} hash")
    expected = HASH_LENGTHS[algorithm]
    if len(text) != expected:
        raise ObservableError(f"{algorithm} hashes have {expected} hex digits; {value!r} has {len(text)}")
    return text


def _observable(kind: str, value: str) -> Observable:
    return Observable(kind, value, f"[{kind}:value = {literal(value)}]", f"{_LABELS[kind]} {value}")


def _ip_observable(value: str, version: int) -> Observable:
    kind = f"ipv{version}-addr"
    canonical = ip(value, version)
    operator = "ISSUBSET" if "/" in canonical else "="
    return Observable(kind, canonical, f"[{kind}:value {operator} {literal(canonical)}]",
                      f"{_LABELS[kind]} {canonical}")
