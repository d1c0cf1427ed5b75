"""The bench's copy of the chart's finalizer policy: the committed kustomize component, renamed for the
run and bound to the run's namespace only (the rig is shared with the test suite). The smoke test in
make test installs it on the rig and checks that procjob's run recorded which API version it used."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bench import finalizerpolicy, report

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


def test_the_component_itself_is_left_as_committed() -> None:
    before = finalizerpolicy.COMPONENT.read_text()
    finalizerpolicy.policy_objects("ns-a", "v1")
    assert finalizerpolicy.COMPONENT.read_text() == before
    assert "procjob-bench" not in before


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
