"""A local CA and a server certificate for the gateway, created once and reused.

Files in the certificate directory::

    ca.pem          the CA certificate: what clients trust (SSL_CERT_FILE=<dir>/ca.pem)
    ca-key.pem      its private key (mode 0600)
    server.pem      the server certificate (SAN localhost, 127.0.0.1, ::1 and any extra hosts)
    server-key.pem  its private key (mode 0600)

:func:`ensure_certificates` reuses what is there while it is valid: the CA (so a client that
already trusts it keeps working) and the server certificate (if it is signed by that CA, covers
the names asked for and does not expire within a day). Otherwise it issues what is missing.
Blocking file I/O: call it from a thread in async code.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificatePaths", "ensure_certificates", "server_ssl_context"]

log = logging.getLogger("sagebidi.gateway")

CA_NAME = "sagebidi-perf local CA"
CA_DAYS = 3650
SERVER_DAYS = 397  # the longest lifetime browsers and most TLS stacks accept for a leaf
RENEW_BEFORE = datetime.timedelta(days=1)
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")

_Name = x509.DNSName | x509.IPAddress


@dataclass(frozen=True, slots=True)
class CertificatePaths:
    """Where the certificate files are; ``ca`` is what clients must trust."""

    directory: Path
    ca: Path
    ca_key: Path
    server: Path
    server_key: Path
    #: True if this call created or replaced the CA (clients must trust the new one).
    created_ca: bool = False
    #: True if this call issued a new server certificate.
    created_server: bool = False


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _san(host: str) -> _Name:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(path: Path, data: bytes, private: bool) -> None:
    """Atomic write (a temporary file renamed into place), 0600 for keys."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def _valid_now(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - RENEW_BEFORE > now


def _issue_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sagebidi-perf"),
        ]
    )
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue_server(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: tuple[str, ...]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _server_ok(
    cert: x509.Certificate | None,
    key: ec.EllipticCurvePrivateKey | None,
    ca: x509.Certificate,
    hosts: tuple[str, ...],
) -> bool:
    if cert is None or key is None or not _same_key(cert, key) or not _valid_now(cert):
        return False
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(n.value) for n in names}
    return all(str(_san(h).value) in have for h in hosts)


def ensure_certificates(
    directory: Path | str, extra_hosts: tuple[str, ...] = ()
) -> CertificatePaths:
    """Create (or reuse) the CA and server certificate in ``directory`` (made 0700 if new)."""
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    hosts = tuple(dict.fromkeys((*DEFAULT_HOSTS, *extra_hosts)))
    ca_path, ca_key_path = directory / "ca.pem", directory / "ca-key.pem"
    server_path, server_key_path = directory / "server.pem", directory / "server-key.pem"

    ca, ca_key = _load_cert(ca_path), _load_key(ca_key_path)
    created_ca = False
    if ca is None or ca_key is None or not _same_key(ca, ca_key) or not _valid_now(ca):
        if ca_path.exists():
            log.warning(
                "replacing the invalid or expiring CA in %s: clients must trust the new one",
                directory,
            )
        ca, ca_key = _issue_ca()
        _write(ca_key_path, _key_pem(ca_key), private=True)
        _write(ca_path, ca.public_bytes(serialization.Encoding.PEM), private=False)
        created_ca = True

    created_server = False
    if created_ca or not _server_ok(_load_cert(server_path), _load_key(server_key_path), ca, hosts):
        cert, key = _issue_server(ca, ca_key, hosts)
        _write(server_key_path, _key_pem(key), private=True)
        _write(server_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
        created_server = True
    return CertificatePaths(
        directory, ca_path, ca_key_path, server_path, server_key_path, created_ca, created_server
    )


def server_ssl_context(paths: CertificatePaths) -> ssl.SSLContext:
    """A TLS 1.2+ server context offering only ALPN ``h2`` (HTTP/2 is mandatory here)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths.server, paths.server_key)
    ctx.set_alpn_protocols(["h2"])
    # RFC 9113 §9.2.2: no compression, no renegotiation (TLS 1.2).
    ctx.options |= ssl.OP_NO_COMPRESSION
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    return ctx
