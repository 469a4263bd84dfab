"""Certificates and keys for the local control plane, generated in Python with ``cryptography``.

Role: one CA; a serving certificate for the apiserver (localhost, 127.0.0.1, ::1, the in-cluster
``kubernetes.default.svc`` names and the first service IP); an admin client certificate in
``system:masters``; an RSA key that signs and verifies service-account tokens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
# The last one is the `kubernetes` Service's ClusterIP (components.KUBERNETES_SERVICE_IP).
SERVING_IPS = ("127.0.0.1", "::1", "10.96.0.1")
VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class PkiPaths:
    """Where each PEM file lives; component flags are built from these."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path

    @classmethod
    def under(cls, folder: Path) -> PkiPaths:
        return cls(
            ca_cert=folder / "ca.crt",
            ca_key=folder / "ca.key",
            serving_cert=folder / "apiserver.crt",
            serving_key=folder / "apiserver.key",
            admin_cert=folder / "admin.crt",
            admin_key=folder / "admin.key",
            sa_key=folder / "sa.key",
            sa_pub=folder / "sa.pub",
        )


def _ec_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys: quick to generate, accepted by Go's TLS stack and by Python's ssl module.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + VALIDITY)
    )


def write_private(path: Path, data: bytes) -> None:
    """Write a key or credential readable by its owner only, from the first byte on."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    if private:
        write_private(path, data)
    else:
        path.write_bytes(data)


def generate(folder: Path) -> PkiPaths:
    """Write a fresh CA, serving and admin certificates and the service-account key pair."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = PkiPaths.under(folder)

    ca_key = _ec_key()
    ca_name = _name("k8s-lab-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths.ca_key, _key_pem(ca_key), private=True)

    serving_key = _ec_key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVING_DNS_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVING_IPS]
    serving = (
        _builder(_name("kube-apiserver"), ca_name, serving_key.public_key())
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(paths.serving_cert, serving.public_bytes(serialization.Encoding.PEM))
    _write(paths.serving_key, _key_pem(serving_key), private=True)

    admin_key = _ec_key()
    admin = (
        _builder(_name("k8s-lab-admin", "system:masters"), ca_name, admin_key.public_key())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(paths.admin_cert, admin.public_bytes(serialization.Encoding.PEM))
    _write(paths.admin_key, _key_pem(admin_key), private=True)

    # Service-account tokens are signed with RSA (RS256), the algorithm every client accepts.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(paths.sa_key, _key_pem(sa_key), private=True)
    _write(
        paths.sa_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return paths
