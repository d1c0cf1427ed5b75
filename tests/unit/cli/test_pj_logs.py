"""`kubectl pj logs` (procjob.cli.pj_logs) against httpx.MockTransport: the live log while the pod
exists, the operator's archive once it is gone (through the service proxy, with the caller's token
and the job's UID), a deleted job's latest archived attempt, and errors that say why. The real
paths are in tests/e2e/test_logs.py."""

from __future__ import annotations

import io
import ssl
from typing import Any

import httpx
import pytest

from procjob.adapters import web
from procjob.cli import pj_logs
from procjob.cli.pj_api import Api
from procjob.cli.pj_commands import Context
from procjob.cli.pj_connect import Access
from procjob.cli.pj_errors import PluginError
from procjob.cli.plugin import build_parser

NS = "team-a"
UID = "0a1b2c3d-0000-4000-8000-000000000001"
POD1 = "j-step-a1-0a1b2c3d"
POD2 = "j-step-a2-0a1b2c3d"
VERIFY = ssl.create_default_context()
PROXY = "/api/v1/namespaces/procjob-system/services/http:procjob-metrics:metrics/proxy"
JOB = {
    "metadata": {"name": "j", "namespace": NS, "uid": UID},
    "spec": {"stages": [{"name": "step"}]},
    "status": {
        "stages": [
            {
                "name": "step",
                "attemptCount": 2,
                "attempts": [{"attempt": 1, "podName": POD1}, {"attempt": 2, "podName": POD2}],
            }
        ]
    },
}
INDEX = {
    "uid": UID,
    "namespace": NS,
    "name": "j",
    "logs": [
        {"stage": "fetch", "attempt": 1, "container": "main", "podName": "j-fetch-a1-0a1b2c3d"},
        {"stage": "step", "attempt": 1, "container": "main", "podName": POD1},
        {"stage": "step", "attempt": 2, "container": "main", "podName": POD2},
    ],
}


class World:
    """The API server and the operator behind its service proxy."""

    def __init__(self) -> None:
        self.job: dict[str, Any] | None = JOB
        self.pods: dict[str, bytes] = {}
        self.archive: dict[tuple[str, str], bytes] = {("step", "1"): b"one\ntwo\nthree\n", ("step", "2"): b"last\n"}
        self.no_database = False
        self.archive_knows_it = True
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == f"/apis/procjob.dev/v1alpha1/namespaces/{NS}/processingjobs/j":
            return httpx.Response(200, json=self.job) if self.job else self.status(404, 'processingjobs "j" not found')
        if path.startswith(f"/api/v1/namespaces/{NS}/pods/"):
            pod = path.split("/")[-2]
            if pod == "broken":
                return self.status(500, "dial tcp 10.0.0.1:10250: connect: connection refused")
            found = self.pods.get(pod)
            return (
                httpx.Response(200, content=found) if found is not None else self.status(404, f'pods "{pod}" not found')
            )
        if path.startswith(PROXY + f"/api/v1/namespaces/{NS}/processingjobs/j/logs"):
            return self.operator(path.removeprefix(PROXY + f"/api/v1/namespaces/{NS}/processingjobs/j/logs"))
        return httpx.Response(599)

    def operator(self, rest: str) -> httpx.Response:
        if self.no_database:
            return httpx.Response(404, json={"error": web.NO_DATABASE, "reason": "NotArchived"})
        if rest == "":
            if not self.archive_knows_it:
                return httpx.Response(404, json={"error": f"no archived logs for processingjob {NS}/j"})
            return httpx.Response(200, json=INDEX)
        _, stage, attempt = rest.split("/")
        content = self.archive.get((stage, attempt))
        if content is None:
            return httpx.Response(404, json={"error": f"no archived log for processingjob {NS}/j stage {stage}"})
        headers = {
            web.LOG_HEADER + "Pod": f"j-{stage}-a{attempt}-0a1b2c3d",
            web.LOG_HEADER + "Container": "main",
            web.LOG_HEADER + "Size": str(len(content)),
            web.LOG_HEADER + "Received-Bytes": "5120",
            web.LOG_HEADER + "Truncated": "true",
            web.LOG_HEADER + "Complete": "true",
        }
        return httpx.Response(200, content=content, headers=headers)

    @staticmethod
    def status(code: int, message: str) -> httpx.Response:
        return httpx.Response(code, json={"kind": "Status", "status": "Failure", "message": message, "code": code})


class Out:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, text: str) -> None:
        self.buffer.write(text.encode())

    def flush(self) -> None:
        return None


def run(world: World, *argv: str) -> tuple[bytes, str]:
    args = build_parser().parse_args(["logs", *argv])
    access = Access(
        server="https://api.example:6443", namespace=NS, verify=VERIFY, headers={"Authorization": "Bearer tok"}
    )
    api = Api(access, transport=httpx.MockTransport(world))
    out, err = Out(), io.StringIO()
    ctx = Context(args=args, connect=lambda: (api, NS), out=out, err=err, environ={})
    assert pj_logs.cmd_logs(ctx) == 0
    return out.buffer.getvalue(), err.getvalue()


def test_the_headers_are_spelled_as_the_operator_writes_them() -> None:
    assert pj_logs.HEADER == web.LOG_HEADER


def test_a_live_pod_is_streamed_from_the_api_server() -> None:
    world = World()
    world.pods[POD2] = b"live\n"
    out, err = run(world, "j", "-c", "main")
    assert out == b"live\n"
    assert err == f"==> pod {POD2} (stage step, attempt 2) <==\n"
    assert world.requests[-1].url.params["container"] == "main"


def test_a_pod_that_is_gone_is_read_from_the_archive_with_the_token_and_the_uid() -> None:
    world = World()
    out, err = run(world, "j", "--attempt", "1")
    assert out == b"one\ntwo\nthree\n"
    assert err == (
        f"==> pod {POD1} (stage step, attempt 1) is gone; archived log: container main,"
        " the last 14 bytes of 5.0 KiB read <==\n"
    )
    request = world.requests[-1]
    assert request.url.path.endswith("/processingjobs/j/logs/step/1")
    assert dict(request.url.params) == {"container": "main", "uid": UID}
    assert request.headers["X-Procjob-Authorization"] == "Bearer tok"


def test_tail_applies_to_the_archived_log_too() -> None:
    out, _ = run(World(), "j", "--attempt", "1", "--tail", "2")
    assert out == b"two\nthree\n"
    out, _ = run(World(), "j", "--attempt", "1", "--tail", "0")
    assert out == b""


def test_archived_reads_the_archive_while_the_pod_exists() -> None:
    world = World()
    world.pods[POD2] = b"live\n"
    out, err = run(world, "j", "--archived")
    assert out == b"last\n"
    assert "is gone" not in err
    assert not any("/pods/" in r.url.path for r in world.requests)


def test_a_deleted_job_is_read_from_its_archive_index() -> None:
    world = World()
    world.job = None
    out, err = run(world, "j")
    assert out == b"last\n"
    assert err.startswith(f"==> pod {POD2} (stage step, attempt 2) is gone; archived log:")
    out, _ = run(world, "j", "--attempt", "1")
    assert out == b"one\ntwo\nthree\n"


def fails(world: World, *argv: str) -> str:
    with pytest.raises(PluginError) as err:
        run(world, *argv)
    return err.value.message


def test_without_a_database_the_error_says_logs_are_not_archived() -> None:
    world = World()
    world.no_database = True
    assert fails(world, "j") == (
        f"logs are not available: pod {POD2} is gone, and pod logs are not archived: the operator runs without a"
        " database (PROCJOB_DATABASE_URL)"
    )
    world.job = None
    assert fails(world, "j") == (
        f"processingjob {NS}/j not found in the API server; its log archive: pod logs are not archived: the operator"
        " runs without a database (PROCJOB_DATABASE_URL)"
    )


def test_errors_say_why() -> None:
    world = World()
    assert fails(world, "j", "--stage", "nope") == f"processingjob {NS}/j has no stage 'nope' (stages: step)"
    world.archive.clear()
    assert (
        fails(world, "j")
        == f"logs are not available: pod {POD2} is gone, and no archived log for processingjob {NS}/j stage step"
    )
    world.job = {
        **JOB,
        "status": {"stages": [{"name": "step", "attemptCount": 1, "attempts": [{"attempt": 1, "podName": "broken"}]}]},
    }
    assert fails(world, "j") == "logs are not available: dial tcp 10.0.0.1:10250: connect: connection refused"
    world.job = None
    assert fails(world, "j", "--stage", "publish") == (
        f"processingjob {NS}/j is not in the API server any more, and its archive holds no such log"
        " (archived: fetch attempt 1, step attempt 1, step attempt 2)"
    )


def test_the_history_names_the_archived_logs_from_the_database_and_from_the_endpoint_alike() -> None:
    from procjob.adapters.audit import ArchivedLog, JobHistory
    from procjob.cli import audit, pj_history

    common = {"job_uid": UID, "namespace": NS, "name": "j", "stage": "step", "container": "main", "pod_uid": "p"}
    logs = (
        ArchivedLog.model_validate({**common, "attempt": 1, "pod_name": POD1, "size": 1024, "truncated": True}),
        ArchivedLog.model_validate({**common, "attempt": 2, "pod_name": POD2, "error": "400 BadRequest: never ran"}),
    )
    history = JobHistory(uid=UID, namespace=NS, name="j", logs=logs)
    text = audit.render_history(history)
    assert text.endswith(
        "\narchived logs (kubectl pj logs JOB --stage S --attempt N):\n"
        "  step attempt 1 main: 1024 bytes, the end of a longer log\n"
        "  step attempt 2 main: not archived: 400 BadRequest: never ran\n"
    )
    assert pj_history.to_output(history.to_json_dict(), "table") == text
    assert audit.render_history(JobHistory(uid=UID, namespace=NS, name="j")).endswith("no attempts recorded\n")


def test_a_kubeconfig_without_a_token_cannot_read_the_archive_and_is_told_why() -> None:
    args = build_parser().parse_args(["logs", "j"])
    access = Access(server="https://api.example:6443", namespace=NS, verify=VERIFY, headers={})
    api = Api(access, transport=httpx.MockTransport(World()))
    ctx = Context(args=args, connect=lambda: (api, NS), out=Out(), err=io.StringIO(), environ={})
    with pytest.raises(PluginError) as err:
        pj_logs.cmd_logs(ctx)
    assert err.value.code == 2
    assert err.value.message.startswith(
        f"logs are not available: pod {POD2} is gone; its archived log: the history endpoint needs a bearer token"
    )


def test_a_job_neither_the_api_server_nor_the_archive_knows_is_not_found() -> None:
    world = World()
    world.job = None
    world.archive_knows_it = False
    assert fails(world, "j") == f"processingjob {NS}/j not found"
