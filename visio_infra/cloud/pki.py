"""The stack's own CA and one certificate per node (`tls.source: stack-ca`: the lab, or bootstrapping an
internal PKI).

One ECDSA P-256 CA per stack, and for every node its own key and a certificate naming only that node:
its name, its addresses (private, and public where there is one) as IP SANs, plus the signalling
name on SFU nodes and the TURN name on TURN nodes. So LiveKit's TLS front, coturn's TLS listeners,
PostgreSQL's `sslmode=verify-full` and the DB nodes' etcd/Patroni peers all verify against the
exported `ca_certificate`, and a node taken over yields only its own key: a TURN node's key cannot
impersonate the database. Keys are generated in a dynamic provider with the `cryptography` package
and only ever stored as Pulumi secrets (encrypted in state, masked in output); each node's key is
written to that node only. A node whose names or addresses change gets a new key and certificate
under the same CA, the others keep theirs; a certificate within RENEW_BEFORE of expiry is re-issued
on the next `pulumi up`, and `visio verify` fails that far ahead (model/certificate_expiry.py), so the
operator knows to run it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi.dynamic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from visio_infra.model.certificate_expiry import RENEW_BEFORE
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.topology import NodeSpec

CA_VALIDITY = dt.timedelta(days=3650)
CERT_VALIDITY = dt.timedelta(days=397)
"""Browsers refuse server certificates valid longer than 398 days, even under a private CA."""


SERVICE_NAMES = {"sfu": "signalling", "turn": "turn"}
"""The public service name (a `domains` field) a node of each role also answers for."""


def node_subject_alt_names(
    config: StackConfig, node: NodeSpec, public_ip: str | None
) -> dict[str, list[str]]:
    """DNS and IP SANs of one node's certificate: its own name and addresses, and its role's public
    service name if it has one (pure; addresses sorted). The node name comes first: it is the CN."""
    dns = [node.name]
    service = SERVICE_NAMES.get(node.role)
    if service:
        dns.append(getattr(config.domains, service))
    ips = {str(node.private_ip)} | ({str(ipaddress.ip_address(public_ip))} if public_ip else set())
    return {"dns": dns, "ips": sorted(ips, key=ipaddress.ip_address)}


def subject_alt_names(
    config: StackConfig, nodes: Sequence[NodeSpec], public_ips: Mapping[str, str | None]
) -> dict[str, dict[str, list[str]]]:
    """The SANs of every node's certificate, by node name (pure)."""
    return {node.name: node_subject_alt_names(config, node, public_ips.get(node.name)) for node in nodes}


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_usage(*, certificate_authority: bool) -> x509.KeyUsage:
    """Signatures only (ECDSA); a CA may also sign certificates and CRLs, a server may not."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=certificate_authority,
        crl_sign=certificate_authority,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def issue_ca(common_name: str, organisation: str, now: dt.datetime) -> tuple[str, str]:
    """(certificate PEM, private key PEM) of a new CA that can only sign server certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name, organisation)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificate_authority=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem_cert(cert), _pem_key(key)


def issue_certificate(
    ca_cert_pem: str, ca_key_pem: str, organisation: str, sans: Mapping[str, Sequence[str]], now: dt.datetime
) -> tuple[str, str]:
    """(certificate PEM, private key PEM) of a TLS server certificate for `sans` signed by the CA."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in sans["dns"]]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in sans["ips"]]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(sans["dns"][0], organisation))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # Client auth too: the DB nodes present it to each other as etcd peers and clients.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(_key_usage(certificate_authority=False), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _pem_cert(cert), _pem_key(key)


def not_after(cert_pem: str) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc


def needs_renewal(cert_pem: str | None, now: dt.datetime) -> bool:
    return not cert_pem or not_after(cert_pem) - now < RENEW_BEFORE


def issue_node_certificates(
    ca_cert_pem: str,
    ca_key_pem: str,
    organisation: str,
    sans: Mapping[str, Mapping[str, Sequence[str]]],
    now: dt.datetime,
    previous: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every node's {sans, certificate, private_key}: a node keeps its previous key and certificate
    while its SANs are the same and the certificate is outside the renewal window; any other node
    (new, renamed, readdressed, or due) gets a new key. Nodes no longer in `sans` are dropped."""
    issued: dict[str, dict[str, Any]] = {}
    for name, node_sans in sans.items():
        old = (previous or {}).get(name)
        if old and old.get("sans") == node_sans and not needs_renewal(old.get("certificate"), now):
            issued[name] = dict(old)
            continue
        cert, key = issue_certificate(ca_cert_pem, ca_key_pem, organisation, node_sans, now)
        issued[name] = {"sans": node_sans, "certificate": cert, "private_key": key}
    return issued


def _due(olds: Mapping[str, Any], news: Mapping[str, Any], now: dt.datetime) -> bool:
    """Whether some node may need a new certificate (or the state predates per-node certificates).

    In a preview where a node is being recreated, its address is not known yet and neither are the
    SANs: that counts as a change (the update, with the real SANs, keeps every unchanged node's key)."""
    nodes, sans = olds.get("nodes"), news.get("sans")
    if not isinstance(sans, Mapping) or any(not isinstance(v, Mapping) for v in sans.values()):
        return True
    if not isinstance(nodes, Mapping) or set(nodes) != set(sans):
        return True
    return any(
        nodes[name].get("sans") != node_sans or needs_renewal(nodes[name].get("certificate"), now)
        for name, node_sans in sans.items()
    )


class _CertificatesProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        now = dt.datetime.now(dt.UTC)
        ca_cert, ca_key = issue_ca(props["ca_name"], props["organisation"], now)
        nodes = issue_node_certificates(ca_cert, ca_key, props["organisation"], props["sans"], now)
        outs = {**props, "ca_certificate": ca_cert, "ca_private_key": ca_key, "nodes": nodes}
        return pulumi.dynamic.CreateResult(id_=props["ca_name"], outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = [key for key in ("ca_name", "organisation") if olds.get(key) != news.get(key)]
        reissue = _due(olds, news, dt.datetime.now(dt.UTC))
        return pulumi.dynamic.DiffResult(
            changes=bool(replaces) or reissue, replaces=replaces, delete_before_replace=False
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        previous = olds.get("nodes") if isinstance(olds.get("nodes"), Mapping) else None
        nodes = issue_node_certificates(
            olds["ca_certificate"],
            olds["ca_private_key"],
            news["organisation"],
            news["sans"],
            dt.datetime.now(dt.UTC),
            previous if olds.get("organisation") == news["organisation"] else None,
        )
        outs = {
            **news,
            "ca_certificate": olds["ca_certificate"],
            "ca_private_key": olds["ca_private_key"],
            "nodes": nodes,
        }
        # A state from before per-node certificates held one shared service key: not carried over.
        outs.pop("certificate", None)
        outs.pop("private_key", None)
        return pulumi.dynamic.UpdateResult(outs=outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # nothing outside the state holds the keys


class _Certificates(pulumi.dynamic.Resource, module="visio-pki", name="Certificates"):
    ca_certificate: pulumi.Output[str]
    ca_private_key: pulumi.Output[str]
    nodes: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions) -> None:
        outputs = {"ca_certificate": None, "ca_private_key": None, "nodes": None}
        super().__init__(_CertificatesProvider(), name, {**props, **outputs}, opts)


class StackCertificates(pulumi.ComponentResource):
    """The stack's CA (exported as `ca_certificate`) and every node's certificate and key (secret)."""

    ca_certificate: pulumi.Output[str]
    node_certificates: pulumi.Output[dict[str, dict[str, str]]]
    """{node name: {"cert": PEM, "key": PEM}}, secret."""

    def __init__(
        self,
        name: str,
        *,
        config: StackConfig,
        nodes: Sequence[NodeSpec],
        public_ips: Mapping[str, pulumi.Input[str | None]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("visio:pki:StackCertificates", name, None, opts)
        names = list(public_ips)
        sans = pulumi.Output.all(*[public_ips[n] for n in names]).apply(
            lambda ips: subject_alt_names(config, nodes, dict(zip(names, ips, strict=True)))
        )
        organisation = f"Visio - {config.ministry.name}"
        certificates = _Certificates(
            f"{name}-certificates",
            {"ca_name": f"Visio {config.ministry.slug} CA", "organisation": organisation, "sans": sans},
            pulumi.ResourceOptions(parent=self, additional_secret_outputs=["ca_private_key", "nodes"]),
        )
        self.ca_certificate = certificates.ca_certificate
        self.node_certificates = pulumi.Output.secret(
            certificates.nodes.apply(
                lambda issued: {
                    node: {"cert": entry["certificate"], "key": entry["private_key"]}
                    for node, entry in (issued or {}).items()
                }
            )
        )
        self.register_outputs({"ca_certificate": self.ca_certificate})
