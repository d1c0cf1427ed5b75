"""`kubectl pj` reads its credentials with the `kubernetes` package's loader (procjob.cli.pj_connect):
the kubeconfig cases kubectl users have (token, token file, basic auth, OIDC, client certificate as data
or file, CA as data or file, exec credential plugins, KUBECONFIG lists, insecure-skip-tls-verify),
the pod's service account, and the errors, each checked on the `Access` the plugin's client uses."""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from procjob.cli.pj_connect import load_access
from procjob.cli.pj_errors import EXIT_USAGE, PluginError

SERVER = "https://127.0.0.1:1"
INSECURE = {"server": SERVER, "insecure-skip-tls-verify": True}


def self_signed(common_name: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a throw-away CA-capable certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(
    path: Path,
    cluster: dict[str, Any],
    user: dict[str, Any],
    *,
    namespace: str | None = None,
    current: str | None = "main",
    names: tuple[str, str, str] = ("c", "u", "main"),
) -> Path:
    cluster_name, user_name, context_name = names
    context: dict[str, Any] = {"cluster": cluster_name, "user": user_name}
    if namespace:
        context["namespace"] = namespace
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": context_name, "context": context}],
    }
    if current:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


def ca_subjects(ctx: ssl.SSLContext | bool) -> list[str]:
    assert isinstance(ctx, ssl.SSLContext)
    return [dict(pair[0] for pair in c["subject"]).get("commonName", "") for c in ctx.get_ca_certs()]


def test_a_token_a_context_namespace_and_the_namespace_flag(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", INSECURE, {"token": "t0ken"}, namespace="team-x")
    access = load_access(str(path), None, None, {})
    assert (access.server, access.namespace) == (SERVER, "team-x")
    assert access.headers == {"Authorization": "Bearer t0ken"}
    assert load_access(str(path), None, "other", {}).namespace == "other"


def test_a_token_file_is_read_relative_to_its_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    path = kubeconfig(tmp_path / "config", INSECURE, {"tokenFile": "token"})
    assert load_access(str(path), None, None, {}).headers == {"Authorization": "Bearer from-file"}


def test_a_username_and_password_are_sent_as_basic_auth(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", INSECURE, {"username": "u", "password": "p"})
    assert load_access(str(path), None, None, {}).headers == {"Authorization": f"Basic {b64(b'u:p')}"}


def test_insecure_skip_tls_verify_turns_verification_off(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", INSECURE, {"token": "t"})
    ctx = load_access(str(path), None, None, {}).verify
    assert isinstance(ctx, ssl.SSLContext)
    assert (ctx.check_hostname, ctx.verify_mode) == (False, ssl.CERT_NONE)


def test_a_plain_http_server_has_no_tls(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"server": "http://127.0.0.1:8080"}, {"token": "t"})
    assert load_access(str(path), None, None, {}).verify is False


@pytest.mark.parametrize("form", ["data", "file"])
def test_the_cluster_ca_as_base64_data_or_as_a_relative_file(tmp_path: Path, form: str) -> None:
    ca, _ = self_signed("test-ca")
    if form == "data":
        cluster = {"server": SERVER, "certificate-authority-data": b64(ca)}
    else:
        (tmp_path / "ca.crt").write_bytes(ca)
        cluster = {"server": SERVER, "certificate-authority": "ca.crt"}
    ctx = load_access(str(kubeconfig(tmp_path / "config", cluster, {"token": "t"})), None, None, {}).verify
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ca_subjects(ctx) == ["test-ca"]


@pytest.mark.parametrize("form", ["data", "file"])
def test_a_client_certificate_as_data_or_files_and_no_authorization_header(
    tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ca, _ = self_signed("test-ca")
    cert, key = self_signed("alice")
    if form == "data":
        user = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    else:
        (tmp_path / "alice.crt").write_bytes(cert)
        (tmp_path / "alice.key").write_bytes(key)
        user = {"client-certificate": "alice.crt", "client-key": "alice.key"}
    cluster = {"server": SERVER, "certificate-authority-data": b64(ca)}
    access = load_access(str(kubeconfig(tmp_path / "config", cluster, user)), None, None, {})
    assert access.headers == {}
    assert ca_subjects(access.verify) == ["test-ca"]
    # The key material the package wrote for the data form is gone once the context holds it.
    assert not list(scratch.iterdir())


def test_a_broken_client_certificate_is_a_usage_error(tmp_path: Path) -> None:
    user = {"client-certificate-data": b64(b"not a certificate"), "client-key-data": b64(b"nor a key")}
    path = kubeconfig(tmp_path / "config", {"server": SERVER}, user)
    with pytest.raises(PluginError) as raised:
        load_access(str(path), None, None, {})
    assert raised.value.code == EXIT_USAGE
    assert "certificates" in raised.value.message


def exec_helper(tmp_path: Path, status: dict[str, str]) -> Path:
    """A credential plugin that prints an ExecCredential with `status` if $EXTRA is yes."""
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}
    (tmp_path / "credential.json").write_text(json.dumps(credential))
    helper = tmp_path / "get-credential"
    helper.write_text(
        "#!/bin/sh\n"
        'test "$EXTRA" = yes || { echo "EXTRA is not set" >&2; exit 3; }\n'
        f'cat "{tmp_path / "credential.json"}"\n'
    )
    helper.chmod(0o755)
    return helper


def test_an_exec_credential_plugin_provides_the_token_and_its_failure_stops_the_command(tmp_path: Path) -> None:
    exec_helper(tmp_path, {"token": "from-exec"})
    exec_spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "./get-credential",  # relative to the kubeconfig's directory
        "env": [{"name": "EXTRA", "value": "yes"}],
    }
    path = kubeconfig(tmp_path / "config", INSECURE, {"exec": exec_spec})
    assert load_access(str(path), None, None, {}).headers == {"Authorization": "Bearer from-exec"}

    exec_spec["env"] = []
    path = kubeconfig(tmp_path / "config", INSECURE, {"exec": exec_spec})
    with pytest.raises(PluginError) as raised:
        load_access(str(path), None, None, {})
    assert raised.value.code == EXIT_USAGE
    assert raised.value.message == "the kubeconfig's credential plugin failed: process returned 3. EXTRA is not set"


def test_an_exec_credential_plugin_may_provide_a_client_certificate(tmp_path: Path) -> None:
    cert, key = self_signed("from-exec")
    status = {"clientCertificateData": cert.decode(), "clientKeyData": key.decode()}
    exec_helper(tmp_path, status)
    exec_spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "./get-credential",
        "env": [{"name": "EXTRA", "value": "yes"}],
    }
    access = load_access(str(kubeconfig(tmp_path / "config", INSECURE, {"exec": exec_spec})), None, None, {})
    assert access.headers == {}
    assert isinstance(access.verify, ssl.SSLContext)


def test_kubeconfig_lists_merge_as_kubectl_does(tmp_path: Path) -> None:
    """The first file that names an entry, or sets current-context, wins; missing files are
    skipped; relative paths are relative to the file that holds the entry."""
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    (second_dir / "token").write_text("second-token")
    first = kubeconfig(first_dir / "config", INSECURE, {"token": "first-token"}, namespace="one", current="main")
    second = kubeconfig(
        second_dir / "config",
        {"server": "https://127.0.0.2:2", "insecure-skip-tls-verify": True},
        {"tokenFile": "token"},
        namespace="two",
        current="other",
        names=("c2", "u2", "other"),
    )
    environ = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "missing"), str(first), str(second)])}
    access = load_access(None, None, None, environ)
    assert (access.server, access.namespace, access.headers) == (SERVER, "one", {"Authorization": "Bearer first-token"})
    other = load_access(None, "other", None, environ)
    assert (other.server, other.namespace) == ("https://127.0.0.2:2", "two")
    assert other.headers == {"Authorization": "Bearer second-token"}
    swapped = {"KUBECONFIG": os.pathsep.join([str(second), str(first)])}
    assert load_access(None, None, None, swapped).namespace == "two"


def test_without_a_namespace_in_the_context_it_is_default(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", INSECURE, {"token": "t"})
    assert load_access(str(path), None, None, {}).namespace == "default"


def test_the_pods_service_account_when_no_kubeconfig_names_a_context(tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    ca, _ = self_signed("cluster-ca")
    (account / "ca.crt").write_bytes(ca)
    (account / "token").write_text("sa-token\n")
    (account / "namespace").write_text("jobs\n")
    environ = {
        "KUBECONFIG": str(tmp_path / "missing"),
        "KUBERNETES_SERVICE_HOST": "fd00::1",
        "KUBERNETES_SERVICE_PORT": "443",
    }
    access = load_access(None, None, None, environ, in_cluster_dir=account)
    assert (access.server, access.namespace) == ("https://[fd00::1]:443", "jobs")
    assert access.headers == {"Authorization": "Bearer sa-token"}
    assert ca_subjects(access.verify) == ["cluster-ca"]
    assert load_access(None, None, "mine", environ, in_cluster_dir=account).namespace == "mine"


def test_the_errors_when_there_is_no_usable_config(tmp_path: Path) -> None:
    nowhere = {"KUBECONFIG": str(tmp_path / "missing")}
    with pytest.raises(PluginError) as raised:
        load_access(None, None, None, nowhere, in_cluster_dir=tmp_path / "no-account")
    assert raised.value.code == EXIT_USAGE
    assert raised.value.message == f"no current context in the kubeconfig ({tmp_path / 'missing'}); use --context"

    with pytest.raises(PluginError, match=r"kubeconfig .*/absent not found") as raised:
        load_access(str(tmp_path / "absent"), None, None, {})
    assert raised.value.code == EXIT_USAGE

    path = kubeconfig(tmp_path / "config", INSECURE, {"token": "t"}, current=None)
    with pytest.raises(PluginError, match="no current context"):
        load_access(str(path), None, None, {}, in_cluster_dir=tmp_path / "no-account")
    with pytest.raises(PluginError, match="context 'nope' not found") as raised:
        load_access(str(path), "nope", None, {})
    assert raised.value.code == EXIT_USAGE

    (tmp_path / "broken").write_text("clusters: [unclosed\n")
    with pytest.raises(PluginError, match="cannot read the kubeconfig") as raised:
        load_access(str(tmp_path / "broken"), None, None, {})
    assert raised.value.code == EXIT_USAGE


def test_a_context_whose_cluster_is_missing_is_a_usage_error(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", INSECURE, {"token": "t"})
    config = yaml.safe_load(path.read_text())
    config["contexts"][0]["context"]["cluster"] = "gone"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(PluginError, match="gone") as raised:
        load_access(str(path), None, None, {})
    assert raised.value.code == EXIT_USAGE


def jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.c2ln"


def test_an_oidc_id_token_that_has_not_expired_is_sent(tmp_path: Path) -> None:
    token = jwt({"sub": "alice", "exp": int((datetime.now(UTC) + timedelta(hours=1)).timestamp())})
    provider = {"name": "oidc", "config": {"id-token": token, "client-id": "k", "idp-issuer-url": "https://idp"}}
    path = kubeconfig(tmp_path / "config", INSECURE, {"auth-provider": provider})
    assert load_access(str(path), None, None, {}).headers == {"Authorization": f"Bearer {token}"}


def test_an_auth_provider_the_package_does_not_implement_is_a_usage_error(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", INSECURE, {"auth-provider": {"name": "azure", "config": {}}})
    with pytest.raises(PluginError) as raised:
        load_access(str(path), None, None, {})
    assert raised.value.code == EXIT_USAGE
    assert raised.value.message == "auth-provider 'azure' is not supported by kubectl-pj; use an exec credential plugin"


def test_an_empty_file_in_the_list_is_skipped_as_kubectl_does(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("")
    path = kubeconfig(tmp_path / "config", INSECURE, {"token": "t"}, namespace="team-x")
    environ = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "empty"), str(path)])}
    assert load_access(None, None, None, environ).namespace == "team-x"
