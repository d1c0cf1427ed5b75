"""The rig's throw-away PKI, generated into a temp dir: who signs what, for which names and uses."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hack.rig.riglib.pki import CLIENTS, FRONT_PROXY_CLIENT, Pki, kubeconfig_text, make_pki, write_private


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    made = Pki(tmp_path_factory.mktemp("pki") / "pki")
    make_pki(made)
    return made


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_ca_is_self_signed_and_may_sign_certificates(pki: Pki) -> None:
    ca = load(pki.ca_crt)
    assert ca.subject == ca.issuer
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    ca.verify_directly_issued_by(ca)


def test_every_leaf_is_signed_by_the_ca_and_is_no_ca(pki: Pki) -> None:
    ca = load(pki.ca_crt)
    for stem in ["apiserver", *CLIENTS]:
        leaf = load(pki.crt(stem))
        leaf.verify_directly_issued_by(ca)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert not leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_the_front_proxy_client_has_a_ca_of_its_own(pki: Pki) -> None:
    """As kubeadm does: the request-header authenticator then refuses every other client's chain by
    name, instead of verifying it in full (ECDSA) on every request before the x509 authenticator."""
    front_proxy_ca = load(pki.front_proxy_ca_crt)
    assert front_proxy_ca.subject == front_proxy_ca.issuer
    assert front_proxy_ca.subject != load(pki.ca_crt).subject
    stem, (cn, _) = FRONT_PROXY_CLIENT
    leaf = load(pki.crt(stem))
    leaf.verify_directly_issued_by(front_proxy_ca)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    for client in CLIENTS:
        assert load(pki.crt(client)).issuer != front_proxy_ca.subject
    assert stat.S_IMODE(pki.front_proxy_ca_key.stat().st_mode) == 0o600


def test_the_apiserver_cert_serves_loopback_and_the_kubernetes_service(pki: Pki) -> None:
    cert = load(pki.crt("apiserver"))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc.cluster.local" in sans.get_values_for_type(x509.DNSName)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    ips = sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert ipaddress.ip_address("10.96.0.1") in ips
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


@pytest.mark.parametrize(("stem", "cn", "org"), [(s, cn, org) for s, (cn, org) in CLIENTS.items()])
def test_client_certs_carry_the_identity_rbac_grants(pki: Pki, stem: str, cn: str, org: str | None) -> None:
    cert = load(pki.crt(stem))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ([org] if org else [])
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_keys_are_p256_and_readable_by_their_owner_only(pki: Pki) -> None:
    keys = [pki.ca_key, pki.sa_key, *(pki.key(s) for s in ["apiserver", *CLIENTS])]
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert b"BEGIN PRIVATE KEY" in path.read_bytes()
    sa_pub = pki.sa_pub.read_bytes()
    assert b"BEGIN PUBLIC KEY" in sa_pub
    public = load_pem_public_key(sa_pub)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"


def test_kubeconfig_inlines_the_ca_and_the_identity(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "kwok.kubeconfig"
    write_private(path, kubeconfig_text(pki, "kwok", "https://127.0.0.1:16443"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "procjob-rig"
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:16443"
    assert doc["users"][0]["name"] == "kwok"
    assert set(doc["users"][0]["user"]) == {"client-certificate-data", "client-key-data"}
