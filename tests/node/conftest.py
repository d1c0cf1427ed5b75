"""The real-node tier: real containers on a real kubelet (hack/rig, `make node-up`), the project's image
built from its Dockerfile (`make image`), the operator installed in-cluster from the Helm chart.

Everything a kwok pod only pretends (the image, the worker, signals, memory limits, logs, the security
context) is proven here. The servers pods talk to (PostgreSQL, S3, HTTP) listen on the rig's bridge
gateway, the only address pods can reach besides the API server's Service IP.

Fixtures (session-scoped unless noted):
- `real_node` -> RealNode: builds the image and brings the node up (node-down at the end unless the
  node was up before or RIG_KEEP=1); `.gateway`, `.subnet`, `.placement` (nodeSelector + toleration),
  `.kubectl(...)`.
- `node_postgres`, `node_s3`, `node_http`: the servers, on the gateway.
- `incluster` -> InCluster: the chart installed with `--set image.repository=localhost/procjob
  --set image.tag=dev`, watching one jobs namespace (`.namespace`), with the database, S3 and the
  fetch allow-list for the bridge subnet; `.run(manifest)` creates a job placed on the real node and
  waits until it finishes.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.http import HttpServer
from tests.support.kube import Kube, finished, wait_for
from tests.support.postgres import PostgresCluster, start_cluster
from tests.support.rig import Rig
from tests.support.s3 import S3Server, start_s3_server
from tests.support.versioned import VersionedSource

ROOT = Path(__file__).resolve().parents[2]
RIG_PY = ROOT / "hack" / "rig" / "rig.py"
CHART = ROOT / "charts" / "procjob"
IMAGE = "localhost/procjob:dev"
NODE_LABEL = ("rig.procjob.dev/node", "real")
TOLERATION = {"key": "rig.procjob.dev/node", "operator": "Equal", "value": "real", "effect": "NoSchedule"}
S3_SECRET = "s3-credentials"

pytestmark = pytest.mark.node


def rig_command(*args: str, timeout: float) -> None:
    """hack/rig/rig.py with its progress lines shown live (a cold image build takes minutes)."""
    print(f"\n[real node] rig.py {' '.join(args)}", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, str(RIG_PY), *args], cwd=ROOT, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"rig.py {' '.join(args)} failed (exit {proc.returncode}); see its output and .rig/logs/")


@dataclass(frozen=True)
class RealNode:
    rig: Rig
    gateway: str
    subnet: str

    @property
    def placement(self) -> dict[str, Any]:
        """What a pod spec needs to run on the real node instead of a kwok one."""
        return {"nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]}, "tolerations": [TOLERATION]}


@pytest.fixture(scope="session")
def real_node(rig: Rig) -> Iterator[RealNode]:
    if os.geteuid() != 0:
        pytest.fail("the real-node tier needs root (containerd, the kubelet, a bridge, iptables)", pytrace=False)
    status = subprocess.run([sys.executable, str(RIG_PY), "node-status"], cwd=ROOT, capture_output=True, check=False)
    was_up = status.returncode == 0
    rig_command("image", timeout=2400)
    rig_command("node-up", timeout=600)
    subnet = json.loads((ROOT / ".rig" / "node" / "undo.json").read_text())["net"]["subnet"]
    gateway = str(next(ipaddress.ip_network(subnet).hosts()))
    try:
        yield RealNode(rig=rig, gateway=gateway, subnet=subnet)
    finally:
        if not was_up and os.environ.get("RIG_KEEP") != "1":
            rig_command("node-down", timeout=300)


@pytest.fixture(scope="session")
def node_postgres(real_node: RealNode) -> Iterator[PostgresCluster]:
    """PostgreSQL listening on 127.0.0.1 and the bridge gateway (password auth from the bridge subnet)."""

    def on_the_bridge(cluster: PostgresCluster) -> None:
        with (cluster.datadir / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1,{real_node.gateway}'\n")
        with (cluster.datadir / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {real_node.subnet} scram-sha-256\n")

    cluster = start_cluster(on_the_bridge)
    try:
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):
            cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def node_s3(real_node: RealNode) -> Iterator[S3Server]:
    server = start_s3_server(host=real_node.gateway)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def node_http(real_node: RealNode) -> Iterator[HttpServer]:
    server = HttpServer(host=real_node.gateway)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def node_versioned(real_node: RealNode) -> Iterator[VersionedSource]:
    source = VersionedSource(host=real_node.gateway)
    try:
        yield source
    finally:
        source.stop()


@dataclass
class InCluster:
    """The operator installed from the chart, and the one namespace it watches."""

    node: RealNode
    kube: Kube
    namespace: str
    system: str
    release: str
    bucket: str

    def pods(self) -> list[dict[str, Any]]:
        """The operator's pods (the chart runs two replicas with leader election)."""
        pods = self.node.rig.kubectl_json("get", "pods", "-n", self.system, "-l", "app.kubernetes.io/name=procjob")
        return [dict(p) for p in pods["items"]]

    def readyz(self, pod: str) -> str:
        path = f"/api/v1/namespaces/{self.system}/pods/{pod}:8080/proxy/readyz"
        return self.node.rig.kubectl("get", "--raw", path, check=False).stdout

    def leader(self) -> dict[str, Any]:
        """The replica whose /readyz says it leads (waited for: the election takes a few seconds)."""

        def find() -> dict[str, Any] | None:
            leading = [p for p in self.pods() if "leading" in self.readyz(p["metadata"]["name"])]
            return leading[0] if len(leading) == 1 else None

        return wait_for("one leading replica", find, timeout=60)

    def place(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The job with the real node's placement in its pod template (kept if the test set one)."""
        template = manifest["spec"].setdefault("podTemplate", {}).setdefault("spec", {})
        for key, value in self.node.placement.items():
            template.setdefault(key, value)
        return manifest

    def create(self, manifest: dict[str, Any]) -> str:
        manifest.setdefault("spec", {}).setdefault("podGC", "Never")
        self.kube.create_job(self.namespace, self.place(manifest))
        return str(manifest["metadata"]["name"])

    def run(self, manifest: dict[str, Any], timeout: float = 180.0) -> dict[str, Any]:
        name = self.create(manifest)
        return wait_for(f"job {name} on the real node", finished(self.kube, self.namespace, name), timeout=timeout)

    def logs(self, pod: str) -> str:
        return self.node.rig.kubectl("logs", "-n", self.namespace, pod, timeout=30).stdout


def helm(rig: Rig, *args: str, timeout: float = 300.0, check: bool = True, diagnose: str | None = None) -> None:
    """Helm from the rig; on failure the message carries the operator's pods and last log lines."""
    proc = subprocess.run(
        [str(ROOT / ".rig" / "bin" / "helm"), *args], env=rig.env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip
    if proc.returncode != 0 and check:
        detail = ""
        if diagnose is not None:
            pods = rig.kubectl("get", "pods", "-n", diagnose, "-o", "wide", check=False).stdout
            logs = rig.kubectl("logs", "-n", diagnose, "-l", "app.kubernetes.io/name=procjob", "--tail=20", check=False)
            detail = f"\n{pods}\n{logs.stdout}{logs.stderr}"
        pytest.fail(f"helm {' '.join(args[:2])} failed:\n{proc.stderr.strip()}{detail}", pytrace=False)


def chart_values(node: RealNode, s3: S3Server, namespace: str) -> dict[str, Any]:
    return {
        "watchNamespaces": [namespace],
        "database": {"existingSecret": "procjob-database", "secretKey": "dsn", "migrate": True},
        "s3": {"endpointUrl": s3.endpoint_url, "region": s3.region, "forcePathStyle": True,
               "credentialsSecret": S3_SECRET},
        "worker": {"fetchAllowedNetworks": [node.subnet]},
        "nodeSelector": node.placement["nodeSelector"],
        "tolerations": node.placement["tolerations"],
        "log": {"level": "INFO"},
        # kubectl pj history/logs through the API server's service proxy, for the jobs namespace's accounts
        "history": {"serviceProxyGroups": [f"system:serviceaccounts:{namespace}"]},
    }  # fmt: skip


def secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": encoded}


@pytest.fixture(scope="session")
def incluster(
    real_node: RealNode, node_postgres: PostgresCluster, node_s3: S3Server, crd: Path, kube: Kube
) -> Iterator[InCluster]:
    rig = real_node.rig
    suffix = uuid.uuid4().hex[:6]
    system, jobs = f"pj-system-{suffix}", f"pj-real-{suffix}"
    for ns in (system, jobs):
        rig.kubectl("create", "namespace", ns)
    dbname = node_postgres.create_database()
    dsn = node_postgres.dsn_for(dbname).replace("@127.0.0.1:", f"@{real_node.gateway}:")
    rig.apply(secret("procjob-database", system, {"dsn": dsn}))
    rig.apply(secret(S3_SECRET, jobs, {"AWS_ACCESS_KEY_ID": node_s3.access_key,
                                       "AWS_SECRET_ACCESS_KEY": node_s3.secret_key}))  # fmt: skip
    values = Path(tempfile.mkdtemp(prefix="procjob-values-")) / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(real_node, node_s3, jobs)))
    release = f"procjob-{suffix}"  # cluster-scoped names (ClusterRoles) are per release
    try:
        t0 = time.monotonic()
        image = ("--set", "image.repository=localhost/procjob", "--set", "image.tag=dev")
        helm(rig, "install", release, str(CHART), "-n", system, "--skip-crds", "-f", str(values), *image,
             "--wait", "--timeout", "240s", diagnose=system)  # fmt: skip
        print(f"\n[real node] chart installed, the operator Ready in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        bucket = node_s3.create_bucket()
        yield InCluster(node=real_node, kube=kube, namespace=jobs, system=system, release=release, bucket=bucket)
    finally:
        # The jobs first, while the operator runs: it removes their audit finalizer.
        rig.kubectl("delete", "processingjobs", "--all", "-n", jobs, "--timeout=120s", check=False, timeout=150)
        helm(rig, "uninstall", release, "-n", system, "--wait", "--timeout", "120s", check=False)
        for ns in (jobs, system):
            rig.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        shutil.rmtree(values.parent, ignore_errors=True)
