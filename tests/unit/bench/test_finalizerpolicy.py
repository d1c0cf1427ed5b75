"""The bench's copy of the chart's finalizer policy: the committed kustomize component, renamed for the
run and bound to the run's namespace only (the rig is shared with the test suite). The smoke test in
make test installs it on the rig and checks that procjob's run recorded which API version it used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from bench import finalizerpolicy, report
from bench.api import ApiError

from procjob.models.job import FINALIZER


def test_the_policy_is_renamed_and_bound_to_the_run_namespace_only() -> None:
    policy, binding = finalizerpolicy.policy_objects("bench-procjob-x", "v1beta1")
    assert policy["kind"] == "MutatingAdmissionPolicy"  # created before its binding
    assert {policy["apiVersion"], binding["apiVersion"]} == {"admissionregistration.k8s.io/v1beta1"}
    assert policy["metadata"]["name"] == binding["metadata"]["name"] == "procjob-bench-bench-procjob-x"
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    (selector,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert selector == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["bench-procjob-x"]}
    (mutation,) = policy["spec"]["mutations"]
    assert FINALIZER in mutation["applyConfiguration"]["expression"]
    assert finalizerpolicy.path_of(policy) == "/apis/admissionregistration.k8s.io/v1beta1/mutatingadmissionpolicies"
    assert finalizerpolicy.path_of(binding).endswith("/v1beta1/mutatingadmissionpolicybindings")


class FakeApi:
    """Discovery serving v1beta1, creates and deletes recorded; the dry-run answers `mutated`."""

    def __init__(self, *, mutated: bool = True, fail_create: str | None = None, fail_delete: int = 0) -> None:
        self.mutated, self.fail_create, self.fail_delete = mutated, fail_create, fail_delete
        self.created: list[str] = []
        self.deleted: list[str] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET":
            served = path.endswith("/v1beta1")
            return {"resources": [{"name": n} for n in finalizerpolicy.PLURALS.values()]} if served else None
        if method == "DELETE":
            if self.fail_delete:
                self.fail_delete -= 1
                raise ApiError(500, method, path, "etcd timeout")
            self.deleted.append(path.rsplit("/", 2)[1])
            return {}
        assert kwargs["params"] == {"dryRun": "All"}
        return {"metadata": {"finalizers": [FINALIZER] if self.mutated else []}}

    async def create(self, path: str, body: dict[str, Any]) -> Any:
        if self.fail_create and body["kind"] == self.fail_create:
            raise ApiError(403, "POST", path, "forbidden")
        self.created.append(path.rsplit("/", 1)[1])
        return body


PROBE = ("/apis/procjob.dev/v1alpha1/namespaces/ns-a/processingjobs", {"kind": "ProcessingJob"})
BOTH = ["mutatingadmissionpolicies", "mutatingadmissionpolicybindings"]


async def test_install_uses_the_served_version_and_remove_deletes_both() -> None:
    api = FakeApi()
    version = await finalizerpolicy.install(api, "ns-a", PROBE)  # type: ignore[arg-type]
    assert version == "v1beta1"
    assert api.created == BOTH
    assert await finalizerpolicy.remove(api, "ns-a", version) == []  # type: ignore[arg-type]
    assert api.deleted == BOTH[::-1]  # the binding first


async def test_served_but_never_mutating_leaves_nothing_and_falls_back_to_none() -> None:
    api = FakeApi(mutated=False)
    assert await finalizerpolicy.install(api, "ns-a", PROBE, within=0.2) == finalizerpolicy.NONE  # type: ignore[arg-type]
    assert sorted(api.deleted) == BOTH


async def test_a_failed_create_deletes_what_was_created_and_raises() -> None:
    api = FakeApi(fail_create="MutatingAdmissionPolicyBinding")
    with pytest.raises(ApiError):
        await finalizerpolicy.install(api, "ns-a", PROBE)  # type: ignore[arg-type]
    assert api.created == BOTH[:1]
    assert sorted(api.deleted) == BOTH  # a 404 for the binding is fine: each is tried


async def test_remove_retries_and_reports_instead_of_raising() -> None:
    api = FakeApi(fail_delete=1)
    assert await finalizerpolicy.remove(api, "ns-a", "v1beta1") == []  # type: ignore[arg-type]
    assert api.deleted == BOTH[::-1]
    api = FakeApi(fail_delete=4)
    failed = await finalizerpolicy.remove(api, "ns-a", "v1beta1")  # type: ignore[arg-type]
    assert len(failed) == 1  # the binding failed 3 times; the policy went
    assert "etcd timeout" in failed[0]
    assert api.deleted == BOTH[:1]
    assert await finalizerpolicy.remove(api, "ns-a", finalizerpolicy.NONE) == []  # type: ignore[arg-type]


def test_a_component_without_its_binding_is_refused(tmp_path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(finalizerpolicy.COMPONENT.read_text()) if d]
    lone = tmp_path / "policy.yaml"
    lone.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] == "MutatingAdmissionPolicy"]))
    with pytest.raises(ValueError, match="expected a policy and its binding"):
        finalizerpolicy.policy_objects("ns-a", "v1", lone)


def test_the_report_names_the_version_each_procjob_run_used_not_the_settings_text() -> None:
    results = {
        "settings": {"finalizer_policy": "the chart's, bound to each procjob namespace"},
        "b0": {"stages_per_s": 1.0},
        "procjob": {"finalizer_policy": "v1beta1"},
        "procjob_paced": {"finalizer_policy": "none"},
    }
    assert report.procjob_policy(results) == "none, v1beta1"
    assert report.procjob_policy({"settings": {}}) == "not recorded"
