"""The examples' shapes, run for real: outputs through real termination messages, a real failing
container retried with backoff, and `fetch-resize` with the real `procjob worker fetch` in a pod."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.jobs import when
from tests.node.conftest import InCluster
from tests.node.jobs import IMAGE, WRITE_OUTPUTS, env, job, python_stage, reason, stage_status
from tests.support.http import HttpServer, payload
from tests.support.s3 import S3Server
from tests.support.versioned import Version, VersionedSource

pytestmark = pytest.mark.node
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_hello_hands_real_termination_messages_on_as_outputs(incluster: InCluster) -> None:
    done = incluster.run(
        job(
            "hello-real",
            python_stage("fetch", WRITE_OUTPUTS, env=env(OUTPUTS='{"key": "raw/hello.jpg", "size": 18231}')),
            python_stage(
                "resize",
                WRITE_OUTPUTS,
                env=env(
                    OUTPUTS='{"input": "{{ stages.fetch.outputs.key }}", "size": "{{ stages.fetch.outputs.size }}",'
                    ' "job": "{{ job.name }}"}'
                ),
            ),
            python_stage("publish", "print('published')"),
        )
    )
    assert reason(done) == "Succeeded", done["status"]
    assert stage_status(done, "fetch")["outputs"] == {"key": "raw/hello.jpg", "size": 18231}
    assert stage_status(done, "resize")["outputs"] == {"input": "raw/hello.jpg", "size": "18231", "job": "hello-real"}
    assert done["status"]["progress"] == "3/3"


def test_retry_backoff_retries_a_real_failing_container_with_its_delays(incluster: InCluster) -> None:
    example = yaml.safe_load((EXAMPLES / "retry-backoff.yaml").read_text())
    flaky = python_stage("flaky", "import os, sys; sys.exit(1 if int(os.environ['PROCJOB_ATTEMPT']) < 3 else 0)")
    done = incluster.run(job("retry-backoff-real", flaky, retry=example["spec"]["retry"]))
    assert reason(done) == "Succeeded", done["status"]
    attempts = stage_status(done, "flaky")["attempts"]
    assert [(a["state"], a.get("exitCode")) for a in attempts] == [("Failed", 1), ("Failed", 1), ("Succeeded", 0)]
    for delay, (before, after) in zip([1, 4], itertools.pairwise(attempts), strict=False):
        assert (when(after["createTime"]) - when(before["finishTime"])).total_seconds() >= delay


def test_exit_2_of_a_real_container_fails_the_job_without_a_retry(incluster: InCluster) -> None:
    example = yaml.safe_load((EXAMPLES / "retry-backoff.yaml").read_text())
    done = incluster.run(
        job("exit-two-real", python_stage("bad", "raise SystemExit(2)"), retry=example["spec"]["retry"])
    )
    assert (done["status"]["phase"], reason(done)) == ("Failed", "StageFailed")
    (attempt,) = stage_status(done, "bad")["attempts"]
    assert attempt["exitCode"] == 2
    assert stage_status(done, "bad")["lastRetryDecision"]["action"] == "FailJob"


def test_fetch_resize_runs_the_real_fetch_worker_against_s3_and_http_on_the_bridge(
    incluster: InCluster, node_http: HttpServer, node_s3: S3Server
) -> None:
    example = yaml.safe_load((EXAMPLES / "fetch-resize.yaml").read_text())
    fetch, resize = example["spec"]["stages"]
    size = 300_000
    fetch["with"].update(url=node_http.url(f"/image/{size}.png"), bucket=incluster.bucket)
    fetch.pop("podMetadata")  # kwok's canned termination message: here the worker writes its own
    resize = python_stage(
        "resize", WRITE_OUTPUTS, env=[*resize["env"], *env(OUTPUTS='{"sha256": "{{ stages.fetch.outputs.sha256 }}"}')]
    )
    done = incluster.run(job("fetch-resize", fetch, resize, retry=example["spec"]["retry"]))
    assert reason(done) == "Succeeded", done["status"]
    outputs = stage_status(done, "fetch")["outputs"]
    expected = hashlib.sha256(payload(size)).hexdigest()
    assert (outputs["key"], outputs["size"], outputs["sha256"]) == ("raw/fetch-resize.jpg", size, expected)
    stored = node_s3.client().get_object(Bucket=incluster.bucket, Key="raw/fetch-resize.jpg")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == expected
    assert stage_status(done, "resize")["outputs"] == {"sha256": expected}
    pod = next(
        p for p in incluster.kube.pods(incluster.namespace)
        if p["metadata"]["labels"]["procjob.dev/stage"] == "fetch" and p["metadata"]["name"].startswith("fetch-resize")
    )  # fmt: skip
    (container,) = pod["spec"]["containers"]
    assert (container["image"], container["command"]) == (IMAGE, ["procjob", "worker", "fetch"])
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], json.loads(terminated["message"])["sha256"]) == (0, expected)


def test_the_same_source_into_the_same_key_is_one_download_across_real_pods(
    incluster: InCluster, node_versioned: VersionedSource
) -> None:
    """Idempotent fetch with the real worker in real pods: a second job (as a retry would) finds the
    object complete with the source's identity and returns its outputs without a GET; a changed
    source is downloaded again."""
    path = "/same.png"
    node_versioned.versions[path] = Version(body=b"\x89PNG" + bytes(range(256)) * 400, etag='"v1"')

    def fetch_job(name: str) -> dict[str, Any]:
        stage = {"name": "fetch", "uses": "fetch", "with": {"url": node_versioned.url(path),
                 "bucket": incluster.bucket, "key": "shared/same.png", "contentTypes": ["image/*"]}}  # fmt: skip
        done = incluster.run(job(name, stage, retry={"limit": 0}))
        assert reason(done) == "Succeeded", done["status"]
        return dict(stage_status(done, "fetch")["outputs"])

    first = fetch_job("same-source-1")
    assert (node_versioned.requests("HEAD", path), node_versioned.requests("GET", path)) == (1, 1)
    second = fetch_job("same-source-2")
    assert second == first
    assert (node_versioned.requests("HEAD", path), node_versioned.requests("GET", path)) == (2, 1)
    node_versioned.versions[path] = Version(body=b"\x89PNG changed", etag='"v2"')
    third = fetch_job("same-source-3")
    assert node_versioned.requests("GET", path) == 2
    assert third["sha256"] != first["sha256"]
