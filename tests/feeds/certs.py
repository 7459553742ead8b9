"""Certificates for TLS feed tests: a CA, a server certificate for 127.0.0.1 it signs (valid or
expired), and a self-signed one."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Test feed CA"))
        .issuer_name(_name("Test feed CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def server_context(
    tmp: Path, *, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, expired: bool = False
) -> ssl.SSLContext:
    """A server SSL context for 127.0.0.1, signed by `issuer` (None: self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    start, end = (
        (now - timedelta(days=10), now - timedelta(days=1))
        if expired
        else (now - timedelta(days=1), now + timedelta(days=10))
    )
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (_name("127.0.0.1"), key)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(signing_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / f"server-{id(cert)}.pem", tmp / f"server-{id(cert)}.key"
    cert_file.write_bytes(_pem(cert))
    key_file.write_bytes(_key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def ca_pem(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> str:
    return _pem(ca[0]).decode()


def issue(
    tmp: Path,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common_name: str,
    *,
    client: bool = False,
) -> tuple[Path, Path]:
    """A certificate for `common_name` signed by `issuer`, written as (cert.pem, key.pem) files:
    a TLS client certificate when `client`, else a server certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=10))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if not client:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    cert = builder.sign(issuer[1], hashes.SHA256())
    stem = tmp / f"{common_name}-{cert.serial_number % 10**8}"
    cert_file, key_file = stem.with_suffix(".pem"), stem.with_suffix(".key")
    cert_file.write_bytes(_pem(cert))
    key_file.write_bytes(_key_pem(key))
    return cert_file, key_file
