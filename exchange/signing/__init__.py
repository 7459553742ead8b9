"""Signing: the Ed25519 keyring, detached JWS over RFC 8785 bytes, and verification."""

from exchange.signing.jws import (
    CTY_STIX,
    CTY_TAXII,
    SIGNATURE_MEMBER,
    attach_signature,
    canonical_bytes,
    canonical_envelope,
    sign_canonical,
    sign_detached,
)
from exchange.signing.keys import InsecureKeyFileError, KeyRing, KeyRingError, SigningKey, default_directory
from exchange.signing.verify import SignatureError, VerifyResult, load_jwks, verify_detached, verify_file

__all__ = [
    "CTY_STIX",
    "CTY_TAXII",
    "SIGNATURE_MEMBER",
    "InsecureKeyFileError",
    "KeyRing",
    "KeyRingError",
    "SignatureError",
    "SigningKey",
    "VerifyResult",
    "attach_signature",
    "canonical_bytes",
    "canonical_envelope",
    "default_directory",
    "load_jwks",
    "sign_canonical",
    "sign_detached",
    "verify_detached",
    "verify_file",
]
