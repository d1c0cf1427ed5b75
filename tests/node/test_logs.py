"""`kubectl pj logs` reads a real container's log: live from the kubelet while the pod exists, and from
the in-cluster operator's archive (through the API server's service proxy) once podGC deleted it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.node.conftest import ROOT, InCluster
from tests.node.jobs import job, python_stage, reason
from tests.support.kube import wait_for

pytestmark = pytest.mark.node
READ_JOBS = [{"apiGroups": ["procjob.dev"], "resources": ["processingjobs"], "verbs": ["get", "list"]}]
READ_LOGS = [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]
TALK = """
import os, sys
attempt = os.environ["PROCJOB_ATTEMPT"]
print("attempt", attempt, "says hello from a real container", flush=True)
print("attempt", attempt, "to stderr", file=sys.stderr, flush=True)
raise SystemExit(1 if attempt == "1" else 0)
"""


def tenant_kubeconfig(incluster: InCluster, tmp_path: Path, account: str, rules: list[dict[str, Any]]) -> Path:
    """A kubeconfig with the bearer token of a service account of the jobs namespace holding `rules`:
    a tenant as the history endpoint sees one (it authenticates tokens, not client certificates)."""
    rig, ns = incluster.node.rig, incluster.namespace
    rig.kubectl("create", "serviceaccount", account, "-n", ns)
    rig.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": account, "namespace": ns}, "rules": rules})  # fmt: skip
    rig.kubectl("create", "rolebinding", account, "-n", ns, f"--role={account}", f"--serviceaccount={ns}:{account}")
    token = rig.kubectl("create", "token", account, "-n", ns, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(rig.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account, "namespace": ns}}],
        "current-context": account,
    }  # fmt: skip
    path = tmp_path / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def pj_logs(incluster: InCluster, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    service = f"{incluster.system}/{incluster.release}-metrics"
    env = dict(incluster.node.rig.env)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "kubectl-pj"), "logs", *args, "-n", incluster.namespace,
         "--operator-service", service],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_kubectl_pj_logs_reads_a_live_real_container_log(incluster: InCluster) -> None:
    done = incluster.run(job("logs-live", python_stage("talk", TALK), retry={"limit": 1, "delaysSeconds": [1]}))
    assert reason(done) == "Succeeded", done["status"]
    first = pj_logs(incluster, "logs-live", "--stage", "talk", "--attempt", "1")
    assert first.returncode == 0, first.stderr
    assert "attempt 1 says hello from a real container" in first.stdout
    assert "attempt 1 to stderr" in first.stdout
    latest = pj_logs(incluster, "logs-live")
    assert "attempt 2 says hello" in latest.stdout, latest.stderr


def test_after_pod_gc_kubectl_pj_logs_reads_the_archived_log(incluster: InCluster, tmp_path: Path) -> None:
    manifest = job("logs-gc", python_stage("talk", TALK), retry={"limit": 1, "delaysSeconds": [1]}, podGC="OnSuccess")
    done = incluster.run(manifest)
    assert reason(done) == "Succeeded", done["status"]
    wait_for(
        "the failed attempt's pod deleted by podGC",
        lambda: not incluster.kube.pods(incluster.namespace, "procjob.dev/job=logs-gc"),
        timeout=120,
    )
    reader = tenant_kubeconfig(incluster, tmp_path, "log-reader", READ_JOBS + READ_LOGS)
    archived = pj_logs(incluster, "logs-gc", "--stage", "talk", "--attempt", "1", kubeconfig=reader)
    assert archived.returncode == 0, archived.stderr
    assert "attempt 1 says hello from a real container" in archived.stdout
    print(f"\n[real node] archived log of logs-gc/talk/1 read back: {archived.stdout.strip()!r}", file=sys.stderr)
    # A tenant who may read the job but not its pods' logs gets no archived log either.
    viewer = tenant_kubeconfig(incluster, tmp_path, "job-viewer", READ_JOBS)
    refused = pj_logs(incluster, "logs-gc", "--stage", "talk", "--attempt", "1", kubeconfig=viewer)
    assert refused.returncode != 0
    assert "says hello" not in refused.stdout
