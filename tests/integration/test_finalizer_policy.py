"""The chart's finalizer policy (charts/procjob/templates/finalizerpolicy.yaml): rendered only with an
audit database and where the cluster serves MutatingAdmissionPolicy, scoped to the watched
namespaces; on the rig (which serves admissionregistration.k8s.io/v1beta1) new jobs in a bound
namespace carry the operator's audit finalizer from their create request, and no other job does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.finalizerpolicy import COMPONENT

from procjob.models.job import FINALIZER
from tests.integration.test_chart import find, render
from tests.support.kube import wait_for
from tests.support.rig import Rig

V1 = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"
V1BETA1 = "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy"
DATABASE = ("--set", "database.existingSecret=procjob-database")
KINDS = ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")


def policy(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for kind in KINDS for o in find(objects, kind)]


def job(name: str, finalizers: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if finalizers:
        meta["finalizers"] = finalizers
    return {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": meta,
        "spec": {"stages": [{"name": "only", "image": "busybox:1.36"}]},
    }


def created_finalizers(rig: Rig, namespace: str, body: dict[str, Any], *, dry_run: bool = False) -> list[str]:
    args = ["create", "-n", namespace, "-f", "-", "-o", "json", *(["--dry-run=server"] if dry_run else [])]
    made = json.loads(rig.kubectl(*args, input=yaml.safe_dump(body)).stdout)
    return list(made["metadata"].get("finalizers") or [])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("--api-versions", V1), None),  # no database: the operator adds no finalizer at all
        (DATABASE, None),  # the cluster serves no MutatingAdmissionPolicy
        ((*DATABASE, "--set", "database.finalizerPolicy=false", "--api-versions", V1), None),
        ((*DATABASE, "--api-versions", V1BETA1), "admissionregistration.k8s.io/v1beta1"),
        ((*DATABASE, "--api-versions", V1, "--api-versions", V1BETA1), "admissionregistration.k8s.io/v1"),
    ],
)
def test_rendered_only_with_a_database_where_the_api_is_served(
    rig: Rig, values: tuple[str, ...], expected: str | None
) -> None:
    objects = policy(render(rig, "pj", "procjob-system", *values))
    if expected is None:
        assert objects == []
        return
    mutating, binding = objects
    assert {o["apiVersion"] for o in objects} == {expected}
    assert binding["spec"]["policyName"] == mutating["metadata"]["name"]
    assert "matchResources" not in binding["spec"]  # every namespace, like the operator's watch
    rules = mutating["spec"]["matchConstraints"]["resourceRules"]
    assert rules == [
        {"apiGroups": ["procjob.dev"], "apiVersions": ["*"], "operations": ["CREATE"], "resources": ["processingjobs"]}
    ]
    assert mutating["spec"]["failurePolicy"] == "Ignore"  # the operator adds a missing finalizer itself
    (mutation,) = mutating["spec"]["mutations"]
    assert f'finalizers: ["{FINALIZER}"]' in mutation["applyConfiguration"]["expression"]


def test_scoped_to_the_watched_namespaces(rig: Rig) -> None:
    values = (*DATABASE, "--api-versions", V1, "--set", "watchNamespaces={team-a,team-b}")
    _, binding = policy(render(rig, "pj", "procjob-system", *values))
    selector = binding["spec"]["matchResources"]["namespaceSelector"]
    assert selector == {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}]
    }


def test_the_kustomize_component_is_the_charts_policy_for_v1(rig: Rig) -> None:
    rendered = policy(render(rig, "procjob", "procjob-system", *DATABASE, "--api-versions", V1))
    component = [d for d in yaml.safe_load_all(COMPONENT.read_text()) if d]
    assert component == rendered


@pytest.fixture
def installed(rig: Rig, crd: Path, namespace: str) -> Iterator[list[dict[str, Any]]]:
    """The chart's policy as the rig serves it, bound to `namespace` only; removed afterwards."""
    release = f"fp-{uuid.uuid4().hex[:8]}"
    values = (*DATABASE, "--api-versions", V1BETA1, "--set", f"watchNamespaces={{{namespace}}}")
    objects = policy(render(rig, release, "procjob-system", *values))
    rig.apply(yaml.safe_dump_all(objects))
    try:
        yield objects
    finally:
        for obj in reversed(objects):
            rig.kubectl("delete", obj["kind"], obj["metadata"]["name"], "--ignore-not-found", check=False)


def test_new_jobs_in_a_bound_namespace_carry_the_finalizer(
    rig: Rig, installed: list[dict[str, Any]], namespace: str, tenant: str
) -> None:
    # The admission plugin loads a new policy a moment after it is stored.
    wait_for(
        "the policy to mutate a dry-run create",
        lambda: FINALIZER in created_finalizers(rig, namespace, job("probe"), dry_run=True),
        timeout=60,
        interval=0.5,
    )
    created: list[tuple[str, str]] = []
    try:
        created.append((namespace, "plain"))
        assert created_finalizers(rig, namespace, job("plain")) == [FINALIZER]
        created.append((namespace, "own"))
        own = created_finalizers(rig, namespace, job("own", ["example.com/keep"]))
        assert own == ["example.com/keep", FINALIZER]  # added to, never replaced
        created.append((tenant, "elsewhere"))
        assert created_finalizers(rig, tenant, job("elsewhere")) == []  # a namespace not bound
        # an update of an existing job is not touched (only CREATE matches)
        rig.kubectl("patch", "-n", namespace, "pj", "plain", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        rig.kubectl("label", "-n", namespace, "pj", "plain", "touched=yes")
        after = rig.kubectl_json("get", "-n", namespace, "pj", "plain")
        assert after["metadata"].get("finalizers") is None
    finally:
        for ns, name in created:  # no operator here to let them go
            rig.kubectl(
                "patch", "-n", ns, "pj", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False
            )
