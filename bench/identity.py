"""The operator's identity in a bench run: the chart's ServiceAccount and RBAC, and a token of it.

In a cluster the operator runs in a pod and authenticates with its ServiceAccount's token, as the
rig's kube-controller-manager does (`--use-service-account-credentials`: each controller has its
own token), and the API server caches a token's verification. The rig's admin kubeconfig
authenticates with a client certificate instead, whose chain the API server verifies (ECDSA) on
every request: `crypto/x509.(*Certificate).Verify` was 6.8 % of its CPU in a 20,000-job run
(pprof), most of it for the operator's requests. Run with the admin certificate, procjob would pay
for an identity it never has in production while B1's controllers do not; so the bench renders the
chart's RBAC for the bench namespace (the namespaced configuration, nothing cluster-scoped), applies
it, and hands the operator a kubeconfig with a token of the chart's ServiceAccount. That also runs
the operator with exactly the chart's permissions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.api import BenchError
from bench.rigctl import KUBECONFIG, ROOT, kubectl, tool

HELM = ROOT / ".rig" / "bin" / "helm"
CHART = ROOT / "charts" / "procjob"
RELEASE = "bench"
ACCOUNT = f"{RELEASE}-procjob"  # the chart's fullname for this release
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
TOKEN_DURATION = "6h"  # longer than any bench run


def rbac(namespace: str) -> list[dict[str, Any]]:
    """The chart's ServiceAccount and RBAC for an operator that watches `namespace` only."""
    values = f"watchNamespaces={{{namespace}}}"
    argv = [str(HELM), "template", RELEASE, str(CHART), "--namespace", namespace, "--set", values]
    rendered = tool(argv, what="helm template")
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    chosen = [o for o in objects if o["kind"] in RBAC_KINDS and o["metadata"]["name"] == ACCOUNT]
    cluster_scoped = [o["kind"] for o in chosen if o["kind"].startswith("Cluster")]
    if cluster_scoped:
        raise BenchError(f"the chart's namespaced configuration rendered {cluster_scoped}")
    if not any(o["kind"] == "ServiceAccount" for o in chosen):
        raise BenchError(f"the chart rendered no ServiceAccount {ACCOUNT}")
    return chosen


def kubeconfig_for(token: str, out: Path, namespace: str, *, account: str = ACCOUNT, admin: Path = KUBECONFIG) -> Path:
    """A kubeconfig for the rig's API server (its address and CA from the admin kubeconfig) with a
    token of `account`; owner-readable only."""
    cluster = yaml.safe_load(admin.read_text())["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rig", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "rig", "user": account, "namespace": namespace}}],
        "current-context": account,
    }
    out.touch(mode=0o600)
    out.chmod(0o600)
    out.write_text(yaml.safe_dump(config))
    return out


def operator_kubeconfig(namespace: str, out: Path) -> Path:
    """Apply the chart's RBAC in `namespace` and write a kubeconfig with a token of its account."""
    manifest = yaml.safe_dump_all(rbac(namespace))
    manifest_path = out.with_suffix(".rbac.yaml")
    manifest_path.write_text(manifest)
    kubectl("apply", "-f", str(manifest_path))
    token = kubectl("create", "token", ACCOUNT, "-n", namespace, f"--duration={TOKEN_DURATION}").strip()
    if not token:
        raise BenchError(f"kubectl create token {ACCOUNT} returned nothing")
    return kubeconfig_for(token, out, namespace)
