"""The YAMLs in examples/ double as e2e tests: each runs to success on the rig."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.jobs import stage_status
from tests.support.kube import Kube, condition, finished, wait_for

pytestmark = pytest.mark.rig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKER_IMAGE = "registry.example/procjob:test"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_each_example_runs_to_success(path: Path, kube: Kube, namespace: str, operator: Any) -> None:
    operator(
        namespace,
        "--worker-image",
        WORKER_IMAGE,
        "--s3-endpoint-url",
        "http://127.0.0.1:9000",
        "--s3-credentials-secret",
        "s3-credentials",
    )
    manifest = yaml.safe_load(path.read_text())
    manifest["spec"]["podGC"] = "Never"
    name = manifest["metadata"]["name"]
    kube.create_job(namespace, manifest)
    done = wait_for(f"example {name}", finished(kube, namespace, name), timeout=90)
    assert condition(done)["reason"] == "Succeeded", condition(done)
    count = len(manifest["spec"]["stages"]) + len(manifest["spec"].get("finally") or [])
    assert done["status"]["progress"] == f"{count}/{count}"


def test_a_fetch_stage_runs_the_worker_and_hands_its_outputs_on(kube: Kube, namespace: str, operator: Any) -> None:
    operator(
        namespace,
        "--worker-image",
        WORKER_IMAGE,
        "--s3-endpoint-url",
        "http://127.0.0.1:9000",
        "--s3-region",
        "eu-west-1",
        "--s3-credentials-secret",
        "s3-credentials",
        "--fetch-allowed-networks",
        "127.0.0.0/8",
    )
    manifest = yaml.safe_load((EXAMPLES / "fetch-resize.yaml").read_text())
    manifest["spec"]["podGC"] = "Never"
    kube.create_job(namespace, manifest)
    done = wait_for("fetch-resize", finished(kube, namespace, "fetch-resize"), timeout=60)
    assert condition(done)["reason"] == "Succeeded"
    outputs = stage_status(done, "fetch")["outputs"]
    assert outputs["key"] == "raw/fetch-resize.jpg"

    pods = {p["metadata"]["labels"]["procjob.dev/stage"]: p["spec"]["containers"][0] for p in kube.pods(namespace)}
    fetch = pods["fetch"]
    assert fetch["image"] == WORKER_IMAGE
    assert fetch["command"] == ["procjob", "worker", "fetch"]
    env = {e["name"]: e for e in fetch["env"]}
    params = json.loads(env["PROCJOB_STAGE_PARAMS"]["value"])
    assert params["key"] == "raw/fetch-resize.jpg"  # templated by the operator
    assert params["url"] == "https://images.example.org/a.jpg"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://127.0.0.1:9000"
    assert env["AWS_REGION"]["value"] == "eu-west-1"
    assert env["PROCJOB_FETCH_ALLOWED_NETWORKS"]["value"] == "127.0.0.0/8"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    resize = {e["name"]: e.get("value") for e in pods["resize"]["env"]}
    assert resize["INPUT_KEY"] == "raw/fetch-resize.jpg"
    assert resize["INPUT_BUCKET"] == "media"
    assert resize["INPUT_SHA256"] == outputs["sha256"]
