"""The Helm chart and the kustomize manifests, against the rig's API server.

- `helm lint --strict` with the default values and each ci/*-values.yaml.
- `helm template` (default, namespaced, every option on) and `kubectl kustomize` of the base and
  each overlay are accepted by the API server (`kubectl apply --server-side --dry-run=server`).
  On the shared rig the fixed namespaces of the manifests (procjob-system, team-a, team-b) are
  mapped to this test's own namespaces before the dry run.
- RBAC: the rendered rules are applied and checked with `kubectl auth can-i --as` the operator's
  service account (what it needs is allowed; pods/exec, secrets, deleting jobs, RBAC writes and
  impersonation are denied), and the operator runs a job end to end authenticated as that service
  account with a token from `kubectl create token`, the audit database on (finalizer patches),
  with a cancel (pod deletions) and a deletion (finalizer removal) on the way.
- The chart's crds/ is the generated CRD, and every generated file is up to date.
- The chart and the kustomize overlays describe the same operator Deployment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.identity import kubeconfig_for

from tests.support.kube import Kube, condition, finished, wait_for
from tests.support.rig import Rig

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "procjob"
MANIFESTS = ROOT / "manifests"
EXAMPLES = ROOT / "examples"


# ------------------------------------------------------------------------------------ helpers
def helm(rig: Rig, *args: str) -> str:
    proc = subprocess.run(
        ["helm", *args], capture_output=True, text=True, env=rig.env, cwd=ROOT, timeout=120, check=False
    )
    assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stderr}"
    return proc.stdout


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(rig: Rig, release: str, namespace: str, *values: str, crds: bool = False) -> list[dict[str, Any]]:
    extra = ["--include-crds"] if crds else []
    return docs(helm(rig, "template", release, str(CHART), "--namespace", namespace, *extra, *values))


def kustomize(rig: Rig, path: Path) -> list[dict[str, Any]]:
    return docs(rig.kubectl("kustomize", str(path)).stdout)


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def relocate(objects: list[dict[str, Any]], mapping: dict[str, str]) -> list[dict[str, Any]]:
    """Map the manifests' fixed namespaces to this test's, so that a dry run on the shared rig
    neither needs nor touches procjob-system, team-a or team-b."""

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if key == "namespace" and isinstance(value, str):
            return mapping.get(value, value)
        return value

    moved = []
    for original in objects:
        obj = walk(original)
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = mapping.get(obj["metadata"]["name"], obj["metadata"]["name"])
        moved.append(obj)
    return moved


def dry_run(rig: Rig, objects: list[dict[str, Any]]) -> None:
    """The API server validates and admits the objects (schema, CEL, defaults) without storing them."""
    text = yaml.safe_dump_all(objects)
    proc = rig.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=procjob-chart-test",
        "-f",
        "-",
        input=text,
        check=False,
    )
    assert proc.returncode == 0, f"dry run refused:\n{proc.stderr}"


Question = tuple[str, str, str | None]  # verb, resource[/subresource], namespace (None: all)


def can_i(rig: Rig, sa: str, questions: list[Question]) -> dict[Question, bool]:
    """`kubectl auth can-i VERB RESOURCE --as=SA` for each question (a few at a time)."""

    def ask(question: Question) -> bool:
        verb, resource, namespace = question
        where = ["-n", namespace] if namespace else ["--all-namespaces"]
        name, _, subresource = resource.partition("/")
        sub = [f"--subresource={subresource}"] if subresource else []
        proc = rig.kubectl("auth", "can-i", verb, name, *sub, f"--as={sa}", *where, check=False)
        assert proc.stdout.strip() in ("yes", "no"), proc.stderr
        return proc.stdout.strip() == "yes"

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(questions, pool.map(ask, questions), strict=True))


@pytest.fixture
def extra_namespaces(rig: Rig) -> Iterator[list[str]]:
    """Two more fresh namespaces (watched namespaces), deleted afterwards."""
    names = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        rig.kubectl("create", "namespace", name)
    try:
        yield names
    finally:
        for name in names:
            rig.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def cluster_scoped(rig: Rig) -> Iterator[list[str]]:
    """Cluster-scoped objects a test creates (`kind/name`), deleted afterwards."""
    created: list[str] = []
    yield created
    for ref in created:
        rig.kubectl("delete", ref, "--ignore-not-found", check=False)


OPERATOR_NEEDS = [
    # (verb, resource) the operator uses, in a watched namespace
    ("get", "processingjobs.procjob.dev"),
    ("list", "processingjobs.procjob.dev"),
    ("watch", "processingjobs.procjob.dev"),
    ("patch", "processingjobs.procjob.dev"),
    ("delete", "processingjobs.procjob.dev"),  # ttlSecondsAfterFinished, the finished-jobs cap
    ("update", "processingjobs.procjob.dev/status"),
    ("update", "processingjobs.procjob.dev/finalizers"),
    ("get", "pods"),
    ("list", "pods"),
    ("watch", "pods"),
    ("create", "pods"),
    ("delete", "pods"),
    ("deletecollection", "pods"),  # podGC: a finished job's ended pods in one request
    ("get", "pods/log"),  # the log archive reads finished attempts' logs before podGC
    ("create", "events"),
]
OPERATOR_MUST_NOT = [
    ("create", "pods/exec"),
    ("update", "pods"),
    ("get", "secrets"),
    ("list", "secrets"),
    ("get", "configmaps"),
    ("create", "processingjobs.procjob.dev"),
    ("update", "processingjobs.procjob.dev"),
    ("patch", "processingjobs.procjob.dev/status"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("impersonate", "users"),
    ("impersonate", "serviceaccounts"),
    ("create", "serviceaccounts/token"),
    ("create", "deployments.apps"),
    ("list", "namespaces"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "events"),
]
# Cluster-scoped: the history endpoint's TokenReview and SubjectAccessReview (the `-reviews` ClusterRole).
REVIEWS_NEEDS = [
    ("create", "tokenreviews.authentication.k8s.io"),
    ("create", "subjectaccessreviews.authorization.k8s.io"),
]
REVIEWS_MUST_NOT = [
    ("create", "certificatesigningrequests.certificates.k8s.io"),
    ("create", "serviceaccounts/token"),
    ("get", "pods"),
    ("get", "processingjobs.procjob.dev"),
]
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def operator_rbac(objects: list[dict[str, Any]], fullname: str, *, reviews: bool = False) -> list[dict[str, Any]]:
    """The operator's own ServiceAccount and RBAC (not the aggregated user roles); with `reviews`,
    also the cluster-scoped `-reviews` ClusterRole and binding of the history endpoint."""
    names = {fullname, f"{fullname}-reviews"} if reviews else {fullname}
    return [o for o in objects if o["kind"] in RBAC_KINDS and o["metadata"]["name"] in names]


# ------------------------------------------------------------------------------ static checks
def test_the_chart_crd_is_the_generated_crd() -> None:
    assert (CHART / "crds" / "processingjob.yaml").read_text() == (ROOT / "crds" / "processingjob.yaml").read_text()


def test_the_chart_dashboard_is_the_dashboard() -> None:
    assert (CHART / "dashboards" / "procjob.json").read_text() == (ROOT / "dashboards" / "procjob.json").read_text()


def test_generated_manifests_are_up_to_date(rig: Rig) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "render_manifests.py"), "--check"],
        capture_output=True,
        text=True,
        env=rig.env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("values", ["", *sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))])
def test_helm_lint(rig: Rig, values: str) -> None:
    args = ["-f", str(CHART / "ci" / values)] if values else []
    out = helm(rig, "lint", "--strict", str(CHART), *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_the_schema_rejects_mistakes(rig: Rig) -> None:
    for bad in (
        "image.tag=latest",
        "log.format=xml",
        "typo=1",
        "watchNamespaces[0]=Not_A_Name",
        "queue.maxRunningJobs=0",
        "networkPolicy.allowedCIDRs[0]=not-a-cidr",
        "networkPolicy.allowedPods[0].namespace=no-labels",
        "networkPolicy.allowedNamespaces[0]=Not_A_Name",
        "leaderElection.enabled=false",  # with the default replicas: 2 — both would write
        "replicas=-1",
        "leaderElection.leaseSeconds=0",
        "leaderElection.retrySeconds=soon",
        "podDisruptionBudget.maxUnavailable=0",  # would block every node drain
        "podAntiAffinity=always",
        "topologySpread.whenUnsatisfiable=Never",
    ):
        proc = subprocess.run(
            ["helm", "template", "x", str(CHART), "--set", bad],
            capture_output=True,
            text=True,
            env=rig.env,
            timeout=60,
            check=False,
        )
        assert proc.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in proc.stderr, (bad, proc.stderr)


def test_the_default_deployment(rig: Rig) -> None:
    objects = render(rig, "procjob", "procjob-system")
    deployment = only(objects, "Deployment", "procjob")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = spec["template"]["spec"]
    selector = spec["selector"]["matchLabels"]
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector},
                    },
                }
            ]
        }
    }
    assert "topologySpreadConstraints" not in pod
    assert pod["serviceAccountName"] == "procjob"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/procjob/procjob:0.1.0"
    assert container["args"] == ["run"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"]["requests"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PROCJOB_WORKER_IMAGE"] == "ghcr.io/procjob/procjob:0.1.0"
    assert not {k for k in env if k.startswith("PROCJOB_DATABASE")}
    assert {k: v for k, v in env.items() if "LEADER" in k} == {
        "PROCJOB_LEADER_ELECT": "true",
        "PROCJOB_LEADER_ELECTION_NAMESPACE": "procjob-system",
        "PROCJOB_LEADER_ELECTION_LEASE_NAME": "procjob-operator",
        "PROCJOB_LEADER_ELECTION_LEASE_SECONDS": "15",
        "PROCJOB_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "10",
        "PROCJOB_LEADER_ELECTION_RETRY_SECONDS": "2",
    }
    budget = only(objects, "PodDisruptionBudget", "procjob")
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": {"matchLabels": selector},
    }
    service = only(objects, "Service", "procjob-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert not find(objects, "ServiceMonitor")
    assert not find(objects, "ConfigMap")
    assert only(objects, "ClusterRoleBinding", "procjob")["subjects"] == [
        {"kind": "ServiceAccount", "name": "procjob", "namespace": "procjob-system"}
    ]


def test_without_leader_election_one_replica_is_replaced_with_recreate(rig: Rig) -> None:
    objects = render(rig, "procjob", "procjob-system", "--set", "leaderElection.enabled=false", "--set", "replicas=1")
    spec = only(objects, "Deployment", "procjob")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    (container,) = spec["template"]["spec"]["containers"]
    assert not [e for e in container["env"] if "LEADER" in e["name"]]
    assert not find(objects, "Role", "procjob-leader-election")
    assert not find(objects, "RoleBinding", "procjob-leader-election")
    assert not find(
        render(rig, "procjob", "procjob-system", "--set", "podDisruptionBudget.enabled=false"), "PodDisruptionBudget"
    )


def test_leader_election_timings_out_of_order_are_refused(rig: Rig) -> None:
    for bad in (
        "leaderElection.retrySeconds=10",
        "leaderElection.renewDeadlineSeconds=15",
        "leaderElection.leaseSeconds=1",
    ):
        proc = subprocess.run(
            ["helm", "template", "x", str(CHART), "--set", bad],
            capture_output=True,
            text=True,
            env=rig.env,
            timeout=60,
            check=False,
        )
        assert proc.returncode != 0, bad
        assert "retrySeconds < renewDeadlineSeconds < leaseSeconds" in proc.stderr, (bad, proc.stderr)


def test_every_option_on(rig: Rig) -> None:
    objects = render(rig, "procjob", "procjob-system", "-f", str(CHART / "ci" / "full-values.yaml"))
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    selector = {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": selector}
            ]
        }
    }
    assert pod["topologySpreadConstraints"] == [
        {
            "topologyKey": "topology.kubernetes.io/zone",
            "maxSkew": 1,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": selector,
        }
    ]
    assert only(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == "50%"
    (container,) = pod["containers"]
    assert container["image"] == (
        "ghcr.io/procjob/procjob@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env == {
        "POD_NAME": None,
        "PROCJOB_LEADER_ELECT": "true",
        "PROCJOB_LEADER_ELECTION_NAMESPACE": "procjob-system",
        "PROCJOB_LEADER_ELECTION_LEASE_NAME": "procjob-operator",
        "PROCJOB_LEADER_ELECTION_LEASE_SECONDS": "20",
        "PROCJOB_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "15",
        "PROCJOB_LEADER_ELECTION_RETRY_SECONDS": "2.5",
        "PROCJOB_METRICS_PORT": "8080",
        "PROCJOB_WORKERS": "16",
        "PROCJOB_EVENTS": "important",
        "PROCJOB_LOG_FORMAT": "text",
        "PROCJOB_LOG_LEVEL": "DEBUG",
        "PROCJOB_WORKER_IMAGE": "ghcr.io/procjob/procjob:0.1.0",
        "PROCJOB_ALLOWED_SERVICE_ACCOUNTS": "uploader,reader",
        "PROCJOB_FETCH_ALLOWED_NETWORKS": "10.20.0.0/16",
        "PROCJOB_S3_ENDPOINT_URL": "https://s3.example.com",
        "PROCJOB_S3_REGION": "eu-west-1",
        "PROCJOB_S3_FORCE_PATH_STYLE": "true",
        "PROCJOB_S3_CREDENTIALS_SECRET": "s3-credentials",
        "PROCJOB_MAX_RUNNING_JOBS": "50",
        "PROCJOB_MAX_RUNNING_JOBS_PER_NAMESPACE": "10",
        "PROCJOB_MAX_RUNNING_PODS": "2000",
        "PROCJOB_MAX_RUNNING_PODS_PER_JOB": "200",
        "PROCJOB_ALLOWED_METADATA_PREFIXES": "cluster-autoscaler.kubernetes.io/",
        "PROCJOB_BASELINE_NAMESPACES": "legacy,gpu-jobs",
        "PROCJOB_S3_NODE_CREDENTIALS": "true",
        "PROCJOB_MAX_PRIORITY": "10",
        "PROCJOB_TTL_SECONDS_AFTER_FINISHED": "86400",
        "PROCJOB_MAX_FINISHED_JOBS_PER_NAMESPACE": "500",
        "PROCJOB_NAMESPACE_MAX_PRIORITY": "batch=0",
        "PROCJOB_DATABASE_URL_FILE": "/etc/procjob/database/dsn",
        "PROCJOB_DATABASE_MIGRATE": "false",
        "PROCJOB_LOG_ARCHIVE_MAX_BYTES": "1048576",
        "PROCJOB_LOG_ARCHIVE_WAIT_SECONDS": "300",
        "PROCJOB_LOG_ARCHIVE_WORKERS": "4",
        "TZ": "UTC",
    }
    assert {"name": "database", "mountPath": "/etc/procjob/database", "readOnly": True} in container["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == "database")
    assert volume["secret"]["secretName"] == "procjob-database"
    monitor = only(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    dashboard = only(objects, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["procjob.json"]) == json.loads(
        (ROOT / "dashboards" / "procjob.json").read_text()
    )


def test_large_numbers_reach_the_operator_as_integers(rig: Rig) -> None:
    """Helm reads YAML numbers as floats: quoted alone, 1048576 became '1.048576e+06' and the operator
    refused to start (found when the chart first ran in-cluster on the real node)."""
    big = [
        "--set", "database.existingSecret=db", "--set", "database.logArchive.maxBytes=1048576",
        "--set", "database.logArchive.waitSeconds=86400", "--set", "operator.ttlSecondsAfterFinished=2592000",
        "--set", "operator.maxFinishedJobsPerNamespace=1000000", "--set", "queue.maxRunningJobs=1000000",
        "--set", "queue.maxRunningJobsPerNamespace=2000000", "--set", "operator.namespaceMaxPriority.batch=1000",
        "--set", "queue.maxRunningPods=1000000",
    ]  # fmt: skip
    (container,) = only(render(rig, "procjob", "procjob-system", *big), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PROCJOB_LOG_ARCHIVE_MAX_BYTES"] == "1048576"
    assert env["PROCJOB_LOG_ARCHIVE_WAIT_SECONDS"] == "86400"
    assert env["PROCJOB_TTL_SECONDS_AFTER_FINISHED"] == "2592000"
    assert env["PROCJOB_MAX_FINISHED_JOBS_PER_NAMESPACE"] == "1000000"
    assert env["PROCJOB_MAX_RUNNING_JOBS"] == "1000000"
    assert env["PROCJOB_MAX_RUNNING_JOBS_PER_NAMESPACE"] == "2000000"
    assert env["PROCJOB_MAX_RUNNING_PODS"] == "1000000"
    assert env["PROCJOB_NAMESPACE_MAX_PRIORITY"] == "batch=1000"


# ------------------------------------------------------------------------- the API server's say
def test_the_default_chart_is_accepted(rig: Rig, crd: Path, namespace: str) -> None:
    objects = render(rig, f"pj-{namespace}", namespace, crds=True)
    assert find(objects, "CustomResourceDefinition", "processingjobs.procjob.dev")
    dry_run(rig, objects)


def test_the_namespaced_chart_is_accepted(rig: Rig, crd: Path, namespace: str, extra_namespaces: list[str]) -> None:
    a, b = extra_namespaces
    objects = render(rig, "pj", namespace, "--set", f"watchNamespaces={{{a},{b}}}")
    fullname = "pj-procjob"
    # cluster-wide only the history endpoint's reviews (cluster-scoped objects)
    assert [b["metadata"]["name"] for b in find(objects, "ClusterRoleBinding")] == [f"{fullname}-reviews"]
    assert [r["metadata"]["namespace"] for r in find(objects, "Role", fullname)] == [a, b]
    assert [r["metadata"]["namespace"] for r in find(objects, "RoleBinding", fullname)] == [a, b]
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["run", f"--namespace={a}", f"--namespace={b}"]
    dry_run(rig, objects)


@pytest.mark.parametrize("path", ["base", "overlays/namespaced", "overlays/with-audit"])
def test_kustomize_manifests_are_accepted(
    rig: Rig, crd: Path, namespace: str, extra_namespaces: list[str], path: str
) -> None:
    objects = kustomize(rig, MANIFESTS / path)
    mapping = {"procjob-system": namespace, "team-a": extra_namespaces[0], "team-b": extra_namespaces[1]}
    dry_run(rig, relocate(objects, mapping))


def test_helm_and_kustomize_describe_the_same_operator(rig: Rig) -> None:
    def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
        found = only(objects, "Deployment", "procjob")
        container = found["spec"]["template"]["spec"]["containers"][0]
        container["env"] = sorted(container["env"], key=lambda e: e["name"])
        container["volumeMounts"] = sorted(container["volumeMounts"], key=lambda m: m["name"])
        found["spec"]["template"]["spec"]["volumes"].sort(key=lambda v: v["name"])
        return found

    base = kustomize(rig, MANIFESTS / "base")
    assert deployment(base) == deployment(render(rig, "procjob", "procjob-system"))
    audit = kustomize(rig, MANIFESTS / "overlays" / "with-audit")
    chart_audit = render(rig, "procjob", "procjob-system", "--set", "database.existingSecret=procjob-database")
    assert deployment(audit) == deployment(chart_audit)
    namespaced = kustomize(rig, MANIFESTS / "overlays" / "namespaced")
    chart_namespaced = render(rig, "procjob", "procjob-system", "--set", "watchNamespaces={team-a,team-b}")
    assert deployment(namespaced) == deployment(chart_namespaced)
    assert [b["metadata"]["name"] for b in find(namespaced, "ClusterRoleBinding")] == ["procjob-reviews"]
    bindings = find(namespaced, "RoleBinding", "procjob")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert {b["roleRef"]["name"] for b in bindings} == {"procjob"}
    for role in find(chart_namespaced, "Role", "procjob"):
        assert only(namespaced, "ClusterRole", "procjob")["rules"] == role["rules"]
    # The leader election's Role and binding, in the operator's namespace, in both.
    for kind in ("Role", "RoleBinding"):
        assert only(namespaced, kind, "procjob-leader-election") == only(base, kind, "procjob-leader-election")
        assert only(base, kind, "procjob-leader-election")["metadata"]["namespace"] == "procjob-system"


# ---------------------------------------------------------------------------------------- RBAC
def test_cluster_wide_rbac_allows_what_the_operator_needs_and_nothing_else(
    rig: Rig, namespace: str, cluster_scoped: list[str]
) -> None:
    release = f"pj-{namespace}"
    fullname = f"{release}-procjob"
    objects = operator_rbac(render(rig, release, namespace), fullname, reviews=True)
    assert sorted(o["kind"] for o in objects) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "ServiceAccount",
    ]
    cluster_scoped += [f"clusterrolebinding/{fullname}", f"clusterrole/{fullname}"]
    cluster_scoped += [f"clusterrolebinding/{fullname}-reviews", f"clusterrole/{fullname}-reviews"]
    rig.apply(yaml.safe_dump_all(objects))
    sa = f"system:serviceaccount:{namespace}:{fullname}"
    expected: dict[Question, bool] = {}
    for verb, resource in OPERATOR_NEEDS:
        expected[(verb, resource, "default")] = True
    for verb in ("list", "watch"):  # kopf's cluster-wide watches
        expected[(verb, "processingjobs.procjob.dev", None)] = True
        expected[(verb, "pods", None)] = True
    for verb, resource in OPERATOR_MUST_NOT:
        expected[(verb, resource, "default")] = False
        expected[(verb, resource, None)] = False
    for verb, resource in REVIEWS_NEEDS:
        expected[(verb, resource, None)] = True
    assert can_i(rig, sa, list(expected)) == expected


def test_namespaced_rbac_is_confined_to_the_watched_namespaces(
    rig: Rig, namespace: str, extra_namespaces: list[str]
) -> None:
    a, b = extra_namespaces
    objects = operator_rbac(render(rig, "pj", namespace, "--set", f"watchNamespaces={{{a},{b}}}"), "pj-procjob")
    assert sorted(o["kind"] for o in objects) == ["Role", "Role", "RoleBinding", "RoleBinding", "ServiceAccount"]
    rig.apply(yaml.safe_dump_all(objects))
    sa = f"system:serviceaccount:{namespace}:pj-procjob"
    expected: dict[Question, bool] = {}
    for watched in (a, b):
        for verb, resource in OPERATOR_NEEDS:
            expected[(verb, resource, watched)] = True
        for verb, resource in OPERATOR_MUST_NOT:
            expected[(verb, resource, watched)] = False
    for verb, resource in OPERATOR_NEEDS:
        for elsewhere in (namespace, "default", None):  # its own namespace, another one, all of them
            expected[(verb, resource, elsewhere)] = False
    assert can_i(rig, sa, list(expected)) == expected


def test_namespaced_rbac_grants_the_reviews_and_only_them_cluster_wide(
    rig: Rig, namespace: str, cluster_scoped: list[str]
) -> None:
    """Watching some namespaces, the operator still needs the two cluster-scoped reviews of the
    history endpoint: a ClusterRole of its own that holds only them."""
    release = f"pj-{namespace}"
    fullname = f"{release}-procjob"
    rendered = render(rig, release, namespace, "--set", f"watchNamespaces={{{namespace}}}")
    reviews = [o for o in operator_rbac(rendered, fullname, reviews=True) if o["kind"].startswith("Cluster")]
    assert sorted(o["kind"] for o in reviews) == ["ClusterRole", "ClusterRoleBinding"]
    assert only(reviews, "ClusterRole")["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ]
    cluster_scoped += [f"clusterrolebinding/{fullname}-reviews", f"clusterrole/{fullname}-reviews"]
    rig.apply(yaml.safe_dump_all([only(rendered, "ServiceAccount", fullname), *reviews]))
    sa = f"system:serviceaccount:{namespace}:{fullname}"
    expected: dict[Question, bool] = {}
    for verb, resource in REVIEWS_NEEDS:
        expected[(verb, resource, None)] = True
    for verb, resource in REVIEWS_MUST_NOT:
        expected[(verb, resource, None)] = False
        expected[(verb, resource, "default")] = False
    assert can_i(rig, sa, list(expected)) == expected


def test_leader_election_may_use_its_lease_in_the_release_namespace_and_nothing_else(rig: Rig, namespace: str) -> None:
    """get and update of the one Lease the operator is told to use (by name), create (which RBAC
    cannot restrict by name), in the release namespace; no other Lease, verb or namespace."""
    release = f"pj-{namespace}"
    fullname = f"{release}-procjob"
    lease = f"{fullname}-operator"
    rendered = render(rig, release, namespace)
    role = only(rendered, "Role", f"{fullname}-leader-election")
    binding = only(rendered, "RoleBinding", f"{fullname}-leader-election")
    assert (role["metadata"]["namespace"], binding["metadata"]["namespace"]) == (namespace, namespace)
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    (container,) = only(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["PROCJOB_LEADER_ELECTION_NAMESPACE"], env["PROCJOB_LEADER_ELECTION_LEASE_NAME"]) == (namespace, lease)
    rig.apply(yaml.safe_dump_all([only(rendered, "ServiceAccount", fullname), role, binding]))
    sa = f"system:serviceaccount:{namespace}:{fullname}"
    leases = "leases.coordination.k8s.io"
    expected = {
        ("get", f"{leases}/{lease}", namespace): True,
        ("update", f"{leases}/{lease}", namespace): True,
        ("create", leases, namespace): True,
        ("get", f"{leases}/another", namespace): False,
        ("update", f"{leases}/another", namespace): False,
        ("patch", f"{leases}/{lease}", namespace): False,
        ("delete", f"{leases}/{lease}", namespace): False,
        ("list", leases, namespace): False,
        ("watch", leases, namespace): False,
        ("get", f"{leases}/{lease}", "default"): False,
        ("create", leases, "default"): False,
    }

    def ask(question: Question) -> bool:
        verb, resource, where = question
        proc = rig.kubectl("auth", "can-i", verb, resource, f"--as={sa}", "-n", str(where), check=False)
        assert proc.stdout.strip() in ("yes", "no"), proc.stderr
        return proc.stdout.strip() == "yes"

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert dict(zip(expected, pool.map(ask, expected), strict=True)) == expected


def test_the_service_proxy_right_names_only_the_operators_service(rig: Rig, namespace: str) -> None:
    """`history.serviceProxyGroups`: `get services/proxy` on the metrics Service, by both the names
    the proxy path can use, in the release namespace only; nothing without the option."""
    release = f"pj-{namespace}"
    assert not find(render(rig, release, namespace), "Role", f"{release}-procjob-history-proxy")
    group = f"system:serviceaccounts:{namespace}"
    rendered = render(rig, release, namespace, "--set", f"history.serviceProxyGroups={{{group}}}")
    role = only(rendered, "Role", f"{release}-procjob-history-proxy")
    binding = only(rendered, "RoleBinding", f"{release}-procjob-history-proxy")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["services/proxy"],
            "resourceNames": [f"{release}-procjob-metrics", f"http:{release}-procjob-metrics:metrics"],
            "verbs": ["get"],
        }
    ]
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]
    rig.apply(yaml.safe_dump_all([role, binding]))
    sa = f"system:serviceaccount:{namespace}:default"
    expected: dict[Question, bool] = {
        ("get", "services/proxy", namespace): False,  # not every service: only by name
        ("get", "services", namespace): False,
        ("get", "services/proxy", "default"): False,
    }
    assert can_i(rig, sa, list(expected)) == expected
    named = rig.kubectl(
        "auth",
        "can-i",
        "get",
        f"services/http:{release}-procjob-metrics:metrics",
        "--subresource=proxy",
        f"--as={sa}",
        "-n",
        namespace,
        check=False,
    )
    assert named.stdout.strip() == "yes", named.stderr


def test_the_network_policy_admits_only_the_listed_peers_to_the_http_port(rig: Rig, namespace: str) -> None:
    assert not find(render(rig, "procjob", "procjob-system"), "NetworkPolicy")
    closed = only(render(rig, "procjob", "procjob-system", "--set", "networkPolicy.enabled=true"), "NetworkPolicy")
    assert closed["spec"]["policyTypes"] == ["Ingress"]
    assert closed["spec"]["ingress"] == []  # no peer listed: nothing may connect (not "everything")
    objects = render(rig, f"pj-{namespace}", namespace, "-f", str(CHART / "ci" / "full-values.yaml"))
    policy = only(objects, "NetworkPolicy")
    assert (
        policy["spec"]["podSelector"]["matchLabels"] == only(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
        },
        {"ipBlock": {"cidr": "10.0.0.0/24"}},
    ]
    dry_run(rig, [policy])


def service_account_kubeconfig(rig: Rig, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig for the rig's server authenticated with a token of `account`."""
    token = rig.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    assert yaml.safe_load(rig.kubeconfig.read_text())["clusters"][0]["cluster"]["server"].startswith(
        "https://127.0.0.1:"
    )
    return kubeconfig_for(token, path, namespace, account=account, admin=rig.kubeconfig)


@pytest.mark.postgres
def test_the_operator_runs_with_only_the_charts_rbac(
    rig: Rig, kube: Kube, namespace: str, operator: Any, database: str, tmp_path: Path
) -> None:
    """The chart's rules are enough: the operator, authenticated as the chart's service account
    (namespaced configuration, so nothing cluster-scoped is created on the shared rig), runs a
    three-stage job, cancels another (pod deletions), records the audit (finalizer patches) and
    lets a deleted job go (finalizer removal); no request is refused along the way. It elects
    itself leader as the chart configures it (its Lease, by the chart's leader-election Role)."""
    rendered = render(rig, "pj", namespace, "--set", f"watchNamespaces={{{namespace}}}")
    objects = operator_rbac(rendered, "pj-procjob")
    objects += [only(rendered, kind, "pj-procjob-leader-election") for kind in ("Role", "RoleBinding")]
    rig.apply(yaml.safe_dump_all(objects))
    (container,) = only(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    election = {e["name"]: e["value"] for e in container["env"] if "LEADER" in e["name"]}
    assert election["PROCJOB_LEADER_ELECT"] == "true"
    kubeconfig = service_account_kubeconfig(rig, namespace, "pj-procjob", tmp_path / "kubeconfig")
    whoami = rig.kubectl(
        "--kubeconfig", str(kubeconfig), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"
    )
    assert whoami.stdout == f"system:serviceaccount:{namespace}:pj-procjob"
    dsn = tmp_path / "dsn"
    dsn.write_text(database)

    env = {"KUBECONFIG": str(kubeconfig), "PROCJOB_DATABASE_URL_FILE": str(dsn), **election}
    proc = operator(namespace, "--migrate", "true", env=env)
    wait_for("the operator to lead", lambda: "leading" in proc.get("/readyz").text, timeout=30)
    hello = yaml.safe_load((EXAMPLES / "hello.yaml").read_text())
    kube.create_job(namespace, hello)
    slow = {
        "metadata": {"name": "slow"},
        "spec": {
            "stages": [
                {
                    "name": "wait",
                    "image": "registry.example/wait:1",
                    "podMetadata": {"annotations": {"rig.procjob.dev/run-seconds": "600"}},
                }
            ]
        },
    }
    kube.create_job(namespace, slow)

    def slow_running() -> bool:
        body = kube.job(namespace, "slow") or {}
        stages = (body.get("status") or {}).get("stages") or []
        return bool(stages and stages[0].get("attempts") and stages[0]["attempts"][-1]["state"] == "Running")

    wait_for("slow to run", slow_running, timeout=60)
    kube.patch_job(namespace, "slow", {"spec": {"cancel": True}})
    done = wait_for("hello to finish", finished(kube, namespace, "hello"), timeout=90)
    assert condition(done)["reason"] == "Succeeded", condition(done)
    assert "procjob.dev/audit" in done["metadata"].get("finalizers", [])
    cancelled = wait_for("slow to be cancelled", finished(kube, namespace, "slow"), timeout=60)
    assert condition(cancelled)["reason"] == "Cancelled"
    wait_for("slow's pod to be deleted", lambda: not kube.pods(namespace, "procjob.dev/job=slow"), timeout=60)
    # Events are posted in the background, after the status write that finished the job
    wait_for("the operator's Events on hello", lambda: kube.events(namespace, "hello"), timeout=30)

    kube.delete_job(namespace, "hello")
    wait_for("hello to be gone (finalizer removed)", lambda: kube.job(namespace, "hello") is None, timeout=60)

    log = proc.log()
    for refused in ("403", "Forbidden", "forbidden", "Not enough permissions"):
        assert refused not in log, f"{refused!r} in the operator log:\n{log[-4000:]}"
