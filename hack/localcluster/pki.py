"""Certificates and keys for the local control plane, generated in Python with ``cryptography``.

Role: one CA; a serving certificate for the apiserver (localhost, 127.0.0.1, ::1, the in-cluster
``kubernetes.default.svc`` names and the first service IP); an admin client certificate in
``system:masters``; the apiserver's client certificate towards kubelets (logs, exec,
port-forward); an RSA key that signs and verifies service-account tokens. For a real node,
``node_credentials`` adds the kubelet's serving certificate (its node IP and name, so the
apiserver can verify it), the kubelet's client certificate as ``system:node:<name>`` in
``system:nodes`` (what the Node authorizer and NodeRestriction admission expect) and
kube-proxy's as ``system:kube-proxy`` (bound to ``system:node-proxier`` by default RBAC).
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
# The user the apiserver is when it calls a kubelet; RBAC binds it to system:kubelet-api-admin.
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"


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
    kubelet_client_cert: Path
    kubelet_client_key: Path

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
            kubelet_client_cert=folder / "apiserver-kubelet-client.crt",
            kubelet_client_key=folder / "apiserver-kubelet-client.key",
        )


def _ec_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys: quick to generate, accepted by Go's TLS stack and by Python's ssl module.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, *organizations: str) -> x509.Name:
    # The apiserver reads a client certificate's CN as the user name, each O as one group.
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in organizations]
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

    _client_pair(ca_key, ca_name, _name("k8s-lab-admin", "system:masters"), paths.admin_cert, paths.admin_key)
    _client_pair(
        ca_key, ca_name, _name(KUBELET_CLIENT_USER), paths.kubelet_client_cert, paths.kubelet_client_key
    )

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


def _client_pair(
    ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, subject: x509.Name, cert: Path, key: Path
) -> None:
    client_key = _ec_key()
    client = (
        _builder(subject, ca_name, client_key.public_key())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(cert, client.public_bytes(serialization.Encoding.PEM))
    _write(key, _key_pem(client_key), private=True)


@dataclass(frozen=True)
class NodePki:
    """A real node's certificates: the kubelet's serving and client pairs, kube-proxy's client pair."""

    serving_cert: Path
    serving_key: Path
    kubelet_cert: Path
    kubelet_key: Path
    proxy_cert: Path
    proxy_key: Path

    @classmethod
    def under(cls, folder: Path) -> NodePki:
        return cls(
            serving_cert=folder / "kubelet-serving.crt",
            serving_key=folder / "kubelet-serving.key",
            kubelet_cert=folder / "kubelet-client.crt",
            kubelet_key=folder / "kubelet-client.key",
            proxy_cert=folder / "kube-proxy.crt",
            proxy_key=folder / "kube-proxy.key",
        )


def _load_ca(paths: PkiPaths) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{paths.ca_key} is not the EC key this module writes")
    return key, x509.load_pem_x509_certificate(paths.ca_cert.read_bytes()).subject


def user_credentials(
    ca: PkiPaths, folder: Path, user: str, groups: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """A client certificate for ``user`` in ``groups``, signed by the cluster CA: (cert, key)."""
    if not user:
        raise ValueError("a user needs a name")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_name = _load_ca(ca)
    cert, key = folder / "client.crt", folder / "client.key"
    _client_pair(ca_key, ca_name, _name(user, *groups), cert, key)
    return cert, key


def node_credentials(ca: PkiPaths, folder: Path, node_name: str, node_ip: str) -> NodePki:
    """Sign a real node's certificates with the cluster CA into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = NodePki.under(folder)
    ca_key, ca_name = _load_ca(ca)
    serving_key = _ec_key()
    sans = [x509.DNSName(node_name), x509.IPAddress(ipaddress.ip_address(node_ip))]
    serving = (
        _builder(_name(node_name), ca_name, serving_key.public_key())
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(paths.serving_cert, serving.public_bytes(serialization.Encoding.PEM))
    _write(paths.serving_key, _key_pem(serving_key), private=True)
    node_subject = _name(f"system:node:{node_name}", "system:nodes")
    _client_pair(ca_key, ca_name, node_subject, paths.kubelet_cert, paths.kubelet_key)
    _client_pair(ca_key, ca_name, _name("system:kube-proxy"), paths.proxy_cert, paths.proxy_key)
    return paths
