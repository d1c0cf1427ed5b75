"""CoreDNS's own identity on the rig: a client certificate and the read-only RBAC its kubernetes plugin
needs (the rules kubeadm gives `system:coredns`), not the admin's credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.x509.oid import ExtendedKeyUsageOID

from .config import LOOPBACK, RUN, RigError
from .nodeconf import NodePaths
from .noderuntime import load_issuer
from .pki import Pki, _name, kubeconfig_text, make_leaf, write_private
from .probes import admin_ssl, api_url, http

USER = "rig-coredns"
CLUSTER_ROLE: dict[str, Any] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": USER},
    "rules": [
        {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    ],
}
BINDING: dict[str, Any] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": USER},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
}


def apply(ports: dict[str, int], path: str, doc: dict[str, Any]) -> None:
    status, body = http(api_url(ports, path), admin_ssl(), "POST", doc)
    if status not in (200, 201, 409):
        raise RigError(f"creating {doc['kind']} {USER} failed: HTTP {status} {body[:200]!r}")


def coredns_kubeconfig(paths: NodePaths, ports: dict[str, int]) -> Path:
    """CoreDNS's kubeconfig (written under .rig/node/pki) after its RBAC is in place."""
    node_pki = Pki(paths.pki)
    make_leaf(node_pki, load_issuer(Pki(RUN / "pki")), "coredns", _name(USER), ExtendedKeyUsageOID.CLIENT_AUTH, [])
    apply(ports, "/apis/rbac.authorization.k8s.io/v1/clusterroles", CLUSTER_ROLE)
    apply(ports, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", BINDING)
    path = paths.root / "coredns.kubeconfig"
    write_private(path, kubeconfig_text(node_pki, "coredns", f"https://{LOOPBACK}:{ports['apiserver']}"))
    return path
