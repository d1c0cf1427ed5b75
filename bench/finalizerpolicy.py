"""The chart's finalizer policy for a procjob run: a MutatingAdmissionPolicy (and its binding) that
gives every ProcessingJob created in the run's namespace the operator's audit finalizer in its own
create request, so the operator makes no PATCH for it (charts/procjob/templates/finalizerpolicy.yaml;
its kustomize rendering in manifests/components/finalizer-policy is what is applied here).

The binding selects the run's namespace only (the rig is shared with the test suite, whose jobs
must not change) and is removed after the run. Where the API server serves no
MutatingAdmissionPolicy (a 1.34/1.35 cluster without the beta), or serves it without mutating
(its admission plugin off), nothing stays installed and the operator patches the finalizer as
before; the result says which (`finalizer_policy`).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import yaml

from bench.api import RETRYABLE_STATUSES, Api, ApiError, BenchError, PollTimeout, poll
from procjob.models.job import FINALIZER

ROOT = Path(__file__).resolve().parents[1]
COMPONENT = ROOT / "manifests" / "components" / "finalizer-policy" / "finalizerpolicy.yaml"
GROUP = "admissionregistration.k8s.io"
VERSIONS = ("v1", "v1beta1")  # preferred first
NONE = "none"
PLURALS = {
    "MutatingAdmissionPolicy": "mutatingadmissionpolicies",
    "MutatingAdmissionPolicyBinding": "mutatingadmissionpolicybindings",
}


def policy_objects(namespace: str, version: str, source: Path = COMPONENT) -> list[dict[str, Any]]:
    """The component's policy and binding, renamed for the run and bound to its namespace only."""
    docs = [d for d in yaml.safe_load_all(source.read_text()) if d]
    kinds = sorted(d["kind"] for d in docs)
    if kinds != sorted(PLURALS):
        raise ValueError(f"{source.name}: expected a policy and its binding, found {kinds}")
    name = f"procjob-bench-{namespace}"
    objects = []
    for doc in copy.deepcopy(docs):
        doc["apiVersion"] = f"{GROUP}/{version}"
        doc["metadata"] = {"name": name, "labels": {"app.kubernetes.io/part-of": "procjob-bench"}}
        if doc["kind"] == "MutatingAdmissionPolicyBinding":
            doc["spec"]["policyName"] = name
            doc["spec"]["matchResources"] = {
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}
                    ]
                }
            }
        objects.append(doc)
    # the policy before its binding
    return sorted(objects, key=lambda d: d["kind"] != "MutatingAdmissionPolicy")


def path_of(obj: dict[str, Any]) -> str:
    return f"/apis/{obj['apiVersion']}/{PLURALS[obj['kind']]}"


async def served_version(api: Api) -> str:
    """The first of VERSIONS whose discovery lists mutatingadmissionpolicies, else NONE."""
    for version in VERSIONS:
        listing = await api.request("GET", f"/apis/{GROUP}/{version}", ok404=True)
        names = {r.get("name") for r in (listing or {}).get("resources", [])}
        if set(PLURALS.values()) <= names:
            return version
    return NONE


async def install(api: Api, namespace: str, probe: tuple[str, dict[str, Any]], *, within: float = 60.0) -> str:
    """Install the policy for `namespace` and wait until a dry-run create of `probe` (path, job)
    comes back with the finalizer; returns the API version used, or NONE: none served, or served but
    never mutating within `within` seconds (the admission plugin off). Whatever fails on the way, what
    was created is deleted again before the error goes on."""
    version = await served_version(api)
    if version == NONE:
        return NONE
    path, body = probe

    async def mutated() -> bool:
        try:
            made = await api.request("POST", path, body=body, params={"dryRun": "All"})
        except ApiError as exc:
            if exc.status in RETRYABLE_STATUSES:
                return False
            raise
        return FINALIZER in ((made or {}).get("metadata") or {}).get("finalizers", [])

    try:
        for obj in policy_objects(namespace, version):
            await api.create(path_of(obj), obj)
        await poll(f"the finalizer policy to mutate jobs in {namespace}", mutated, within=within, interval=0.5)
    except BaseException as exc:
        await remove(api, namespace, version)
        if isinstance(exc, PollTimeout):
            return NONE  # served, but nothing mutates: the operator patches the finalizer itself
        raise
    return version


async def remove(api: Api, namespace: str, version: str) -> list[str]:
    """Delete the run's binding and policy (nothing when none was installed), each tried whatever
    became of the other; returns what could not be deleted, for the caller to report (never raises
    a BenchError: it runs in cleanup, where it must not hide the run's own error)."""
    failed: list[str] = []
    if version == NONE:
        return failed
    for obj in reversed(policy_objects(namespace, version)):
        where = f"{path_of(obj)}/{obj['metadata']['name']}"
        for attempt in range(3):
            try:
                await api.request("DELETE", where, ok404=True)
                break
            except BenchError as exc:
                if attempt == 2:
                    failed.append(str(exc))
                else:
                    await asyncio.sleep(0.5)
    return failed
