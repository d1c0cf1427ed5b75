"""The pods the operator builds from pod templates, judged by the real Pod API and its Pod Security
admission (the rig's kube-apiserver 1.35, `pod-security.kubernetes.io/enforce` on the namespace).

Whatever the operator's validation accepts outside the namespaces listed for baseline is admitted under
`enforce: restricted`; whatever it accepts in a listed namespace is admitted under `enforce: baseline`.
Every pod is sent with `--dry-run=server`: admission runs in full, nothing is stored.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from procjob.core.config import CoreConfig
from procjob.core.podspec import build_pod
from procjob.core.validation import validate_spec
from procjob.models.job import ProcessingJob
from procjob.models.security import BASELINE_CAPABILITIES
from tests.integration.test_schema_podtemplate import CONTAINER_CONTEXT, FULL_TEMPLATE, MOUNTS
from tests.support.rig import Rig

pytestmark = pytest.mark.rig

IMAGE = "registry.example/procjob-test:1"


def make_job(namespace: str, spec: dict[str, Any]) -> ProcessingJob:
    metadata = {"name": "pt", "namespace": namespace, "uid": "0a1b2c3d-0000-4000-8000-000000000001"}
    return ProcessingJob.from_api({"metadata": {**metadata, "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec})


def admitted(rig: Rig, namespace: str, pod: dict[str, Any]) -> tuple[bool, str]:
    proc = rig.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)
    return proc.returncode == 0, proc.stderr + proc.stdout


def enforce(rig: Rig, namespace: str, level: str) -> None:
    rig.kubectl("label", "namespace", namespace, "--overwrite", f"pod-security.kubernetes.io/enforce={level}")


def full_spec(**stage: Any) -> dict[str, Any]:
    template = json.loads(json.dumps(FULL_TEMPLATE))
    for cluster_scoped in ("priorityClassName", "runtimeClassName"):  # admission needs them to exist
        del template["spec"][cluster_scoped]
    return {
        "serviceAccountName": "default",  # the projected token needs one, and it must exist
        "podTemplate": template,
        "stages": [{"name": "s", "image": IMAGE, "volumeMounts": MOUNTS, **stage}],
    }


def test_a_pod_from_a_full_template_is_admitted_as_restricted(rig: Rig, namespace: str) -> None:
    enforce(rig, namespace, "restricted")
    config = CoreConfig(allowed_service_accounts=frozenset({"default"}))
    job = make_job(namespace, full_spec(securityContext=CONTAINER_CONTEXT))
    assert job.spec is not None, job.spec_error
    assert validate_spec(job.spec, config, namespace) == []
    ok, output = admitted(rig, namespace, build_pod(job, 0, 1, {}, config))
    assert ok, output


ROOT = {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False, "fsGroup": 0}
BASELINE_CONTAINER = {"allowPrivilegeEscalation": True, "capabilities": {"add": list(BASELINE_CAPABILITIES)}}


def test_root_is_baseline_not_restricted_for_the_operator_and_for_pod_security_admission(
    rig: Rig, namespace: str
) -> None:
    spec = {
        "podTemplate": {"spec": {"securityContext": ROOT}},
        "stages": [{"name": "s", "image": IMAGE, "securityContext": BASELINE_CONTAINER}],
    }
    job = make_job(namespace, spec)
    assert job.spec is not None, job.spec_error
    listed = CoreConfig(baseline_namespaces=frozenset({namespace}))
    assert validate_spec(job.spec, listed, namespace) == []
    assert (
        len(validate_spec(job.spec, CoreConfig(), namespace)) == 7
    )  # uid, gid, non-root, fsGroup, escalation, caps; the note
    pod = build_pod(job, 0, 1, {}, listed)
    enforce(rig, namespace, "baseline")
    ok, output = admitted(rig, namespace, pod)
    assert ok, output
    enforce(rig, namespace, "restricted")
    ok, output = admitted(rig, namespace, pod)
    assert not ok
    assert 'violates PodSecurity "restricted:latest"' in output


IDS = [None, None, 0, 1000]  # unset twice: a sample of the space where most pods pass
FLAGS = [None, None, False, True]


def contexts(seed: int, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pod and container security contexts, a deterministic sample of the combinations."""
    pods = [
        {
            k: v
            for k, v in zip(("runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup"), combo, strict=True)
            if v is not None
        }
        for combo in itertools.product(IDS, IDS, FLAGS, IDS)
    ]
    containers = [
        {
            k: v
            for k, v in zip(
                ("runAsUser", "runAsNonRoot", "allowPrivilegeEscalation", "capabilities"), combo, strict=True
            )
            if v is not None
        }
        for combo in itertools.product(IDS, FLAGS, FLAGS, [None, {"add": ["NET_BIND_SERVICE"]}, {"add": ["CHOWN"]}])
    ]
    rng = random.Random(seed)
    return [(rng.choice(pods), rng.choice(containers)) for _ in range(count)]


@pytest.mark.parametrize("level", ["restricted", "baseline"])
def test_what_the_operator_accepts_pod_security_admission_admits(rig: Rig, namespace: str, level: str) -> None:
    enforce(rig, namespace, level)
    config = CoreConfig(baseline_namespaces=frozenset({namespace} if level == "baseline" else ()))
    accepted = 0
    for pod_context, container_context in contexts(seed=15, count=100):
        spec = {
            "podTemplate": {"spec": {"securityContext": pod_context}},
            "stages": [{"name": "s", "image": IMAGE, "securityContext": container_context}],
        }
        job = make_job(namespace, spec)
        assert job.spec is not None, job.spec_error
        if validate_spec(job.spec, config, namespace):
            continue
        accepted += 1
        ok, output = admitted(rig, namespace, build_pod(job, 0, 1, {}, config))
        assert ok, f"{pod_context} {container_context}: {output}"
    assert accepted >= 10  # the sample holds pods the operator accepts, not only refusals
