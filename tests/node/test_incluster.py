"""The operator from the Helm chart, in its own image, on the real node: what no local process shows."""

from __future__ import annotations

import pytest

from tests.node.conftest import InCluster

pytestmark = pytest.mark.node


def test_the_chart_runs_the_operator_in_its_image_as_the_non_root_user_without_a_restart(incluster: InCluster) -> None:
    pods = incluster.pods()
    assert pods
    for pod in pods:
        assert pod["spec"]["nodeName"] == "rig-real-0"
        (container,) = pod["spec"]["containers"]
        assert container["image"] == "localhost/procjob:dev"
        (status,) = pod["status"]["containerStatuses"]
        # uid 65532 has no passwd entry in the image: kopf's own identity guess crash-looped there.
        assert status["ready"] is True
        assert status["restartCount"] == 0
        ids = incluster.node.rig.kubectl(
            "exec", "-n", incluster.system, pod["metadata"]["name"], "--", "python", "-c",
            "import os; print(os.getuid(), os.getgid(), os.access('/', os.W_OK))",
        ).stdout.split()  # fmt: skip
        assert ids == ["65532", "65532", "False"]


def test_its_probes_and_metrics_answer_through_the_api_server(incluster: InCluster) -> None:
    name = incluster.leader()["metadata"]["name"]
    assert "leading" in incluster.readyz(name)
    base = f"/api/v1/namespaces/{incluster.system}/pods/{name}:8080/proxy"
    metrics = incluster.node.rig.kubectl("get", "--raw", f"{base}/metrics").stdout
    assert "procjob_audit_up 1" in metrics.replace(".0", "")


def test_it_talks_to_the_api_server_through_the_kubernetes_service_not_a_kubeconfig(incluster: InCluster) -> None:
    env = incluster.node.rig.kubectl(
        "exec", "-n", incluster.system, incluster.leader()["metadata"]["name"], "--", "python", "-c",
        "import os; print(os.environ['KUBERNETES_SERVICE_HOST'], 'KUBECONFIG' in os.environ)",
    ).stdout.split()  # fmt: skip
    assert env == ["10.96.0.1", "False"]
