"""Where the API server is and who the caller is, read by the official `kubernetes` package.

The package's config loader does what kubectl does with a kubeconfig: it merges the files
(--kubeconfig, else every file named in $KUBECONFIG, else ~/.kube/config; the first file that
names a cluster, user or context wins), resolves certificate paths relative to their file, decodes
`*-data` fields, runs exec credential plugins, refreshes OIDC tokens, and reads a pod's service
account. This module asks it for a `kubernetes.client.Configuration` and turns that into an
`Access` for the plugin's small httpx client: the server, a TLS context, the Authorization header
and the namespace. It adds only what the package leaves out, as kubectl does it:
- the namespace of the context (the package has no use for it);
- which `current-context` wins when several files set one: the first (the package takes the last);
- a failed exec credential plugin stops the command with the plugin's error (the package logs it
  and goes on without credentials, which the API server would answer with a bare 401);
- the in-cluster service account only when no kubeconfig names a context;
- an empty file in the list is skipped (the package refuses it), and an auth-provider the package
  does not implement (only `oidc` and `gcp` are) is a usage error rather than an anonymous request.

`kubernetes` (and with it pydantic) is imported by `load_access` only, not with this module:
`kubectl pj --help` and bad usage stay quick.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from procjob.cli.pj_errors import EXIT_USAGE, PluginError

if TYPE_CHECKING:
    from kubernetes.client import Configuration

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = "~/.kube/config"
DEFAULT_NAMESPACE = "default"
AUTH_PROVIDERS = frozenset({"oidc", "gcp"})  # those the kubernetes package implements


@dataclass(frozen=True)
class Access:
    """Where the API server is and how to talk to it, resolved from a kubeconfig."""

    server: str
    namespace: str
    verify: ssl.SSLContext | bool
    headers: Mapping[str, str]


def load_access(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    environ: Mapping[str, str],
    *,
    in_cluster_dir: Path = IN_CLUSTER_DIR,
) -> Access:
    """Resolve server, credentials and namespace as kubectl does (usage errors exit 2).

    Files the package writes for `*-data` certificates and keys live in a private directory that
    is removed as soon as the TLS context has read them."""
    from kubernetes.config.config_exception import ConfigException

    files = kubeconfig or environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    if kubeconfig and not Path(kubeconfig).expanduser().is_file():
        raise PluginError(f"kubeconfig {kubeconfig} not found", EXIT_USAGE)
    with tempfile.TemporaryDirectory(prefix="kubectl-pj-") as scratch:
        try:
            with _credential_plugin_errors():
                found = _from_kubeconfig(files, context, scratch) or _from_service_account(environ, in_cluster_dir)
        except ConfigException as exc:
            raise PluginError(f"cannot use the kubeconfig ({files}): {exc}", EXIT_USAGE) from None
        except (OSError, yaml.YAMLError) as exc:
            raise PluginError(f"cannot read the kubeconfig ({files}): {exc}", EXIT_USAGE) from None
        if found is None:
            raise PluginError(f"no current context in the kubeconfig ({files}); use --context", EXIT_USAGE)
        configuration, context_namespace = found
        return Access(
            server=str(configuration.host).rstrip("/"),
            namespace=namespace or context_namespace or DEFAULT_NAMESPACE,
            verify=tls_context(configuration),
            headers=authorization(configuration),
        )


def _from_kubeconfig(files: str, context: str | None, scratch: str) -> tuple[Configuration, str | None] | None:
    """The Configuration of `context` (else the current context) and its namespace; None when
    no file exists or none sets a current context."""
    from kubernetes.client import Configuration
    from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

    merger: Any = KubeConfigMerger(_non_empty(files))  # type: ignore[no-untyped-call]  # no annotations there
    if merger.config is None:
        return None
    name = context or _first_current_context(merger)
    if not name:
        return None
    if merger.config["contexts"].get_with_name(name, safe=True) is None:
        raise PluginError(f"context {name!r} not found in the kubeconfig", EXIT_USAGE)
    loader: Any = KubeConfigLoader(  # type: ignore[no-untyped-call]
        config_dict=merger.config,
        active_context=name,
        config_base_path=None,  # relative paths: from the file that holds the entry
        config_persister=merger.save_changes,  # refreshed OIDC tokens are written back, as kubectl does
        temp_file_path=scratch,
    )
    _check_auth_provider(merger, loader.current_context)
    configuration = Configuration()
    loader.load_and_set(configuration)
    context_namespace = (loader.current_context.get("context") or {}).get("namespace")
    return configuration, context_namespace


def _non_empty(files: str) -> str:
    """The existing, non-empty files of a KUBECONFIG-style list (kubectl reads an empty file as an
    empty config; the package raises)."""
    paths = [Path(p).expanduser() for p in files.split(os.pathsep) if p]
    return os.pathsep.join(str(p) for p in paths if p.is_file() and p.stat().st_size > 0)


def _check_auth_provider(merger: Any, context: Mapping[str, Any]) -> None:
    """Refuse an auth-provider the package would silently skip (the API server would then see an
    anonymous request and answer a bare 401)."""
    user = merger.config["users"].get_with_name((context.get("context") or {}).get("user"), safe=True)
    provider = ((user.value if user is not None else {}).get("user") or {}).get("auth-provider") or {}
    name = provider.get("name")
    if name and name not in AUTH_PROVIDERS:
        raise PluginError(
            f"auth-provider {name!r} is not supported by kubectl-pj; use an exec credential plugin", EXIT_USAGE
        )


def _first_current_context(merger: Any) -> str | None:
    """kubectl's rule: the first file of the list that sets current-context wins."""
    for path in merger.paths:
        name = (merger.config_files.get(path) or {}).get("current-context")
        if name:
            return str(name)
    return None


def _from_service_account(environ: Mapping[str, str], directory: Path) -> tuple[Configuration, str | None] | None:
    """The pod's service account, when the plugin runs in a pod (service host, port and token)."""
    from kubernetes.client import Configuration
    from kubernetes.config.incluster_config import InClusterConfigLoader

    token = directory / "token"
    if not environ.get("KUBERNETES_SERVICE_HOST") or not environ.get("KUBERNETES_SERVICE_PORT") or not token.is_file():
        return None
    configuration = Configuration()
    loader: Any = InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(token), cert_filename=str(directory / "ca.crt"), environ=environ
    )
    loader.load_and_set(configuration)
    namespace_file = directory / "namespace"
    return configuration, namespace_file.read_text().strip() if namespace_file.is_file() else None


def tls_context(configuration: Configuration) -> ssl.SSLContext | bool:
    """An SSL context from the Configuration's CA file, client certificate and verify setting
    (False for a plain-http server)."""
    if not str(configuration.host).startswith("https"):
        return False
    try:
        ctx = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if not configuration.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if configuration.cert_file and configuration.key_file:
            ctx.load_cert_chain(configuration.cert_file, configuration.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise PluginError(f"cannot use the kubeconfig's certificates: {exc}", EXIT_USAGE) from None
    return ctx


def authorization(configuration: Configuration) -> dict[str, str]:
    """The Authorization header: `Bearer <token>` (from a token, token file, exec plugin, OIDC or
    the service account) or `Basic …`; none for a client certificate."""
    value = configuration.get_api_key_with_prefix("BearerToken")
    if not value:
        return {}
    scheme, _, credential = value.partition(" ")
    if scheme.lower() == "bearer":  # the in-cluster loader writes "bearer <file content>"
        return {"Authorization": f"Bearer {credential.strip()}"}
    return {"Authorization": value}


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _credential_plugin_errors() -> Iterator[None]:
    """Turn the error the package logs for a failed exec credential plugin into a usage error."""
    records = _ErrorRecords()
    root = logging.getLogger()
    root.addHandler(records)
    try:
        yield
    finally:
        root.removeHandler(records)
    if records.messages:
        detail = records.messages[-1].removeprefix("exec: ")
        raise PluginError(f"the kubeconfig's credential plugin failed: {detail}", EXIT_USAGE)
