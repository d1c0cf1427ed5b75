"""`kubectl pj list [--failed]` and `kubectl pj retry --all-failed` against a fake API: what is
listed, how the API server is asked (the `status.phase=Failed` field selector, and the fallback for
servers that refuse it), what is retried and skipped, and how the commands report it. The list call
itself (pages) runs on httpx.MockTransport; the real API server is in tests/integration/test_plugin.py.
"""

from __future__ import annotations

import argparse
import io
import json
import ssl
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from procjob.cli import pj_commands, plugin
from procjob.cli.pj_api import RETRY_ANNOTATION, Api
from procjob.cli.pj_connect import Access
from procjob.cli.pj_errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ApiError, PluginError
from procjob.cli.pj_list import duration_seconds, failed_stage, render, rows

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TOKEN = "2026-05-01T12:00:00Z"
OUTCOMES = {  # reason -> (condition status, phase)
    "Running": ("Unknown", "Running"),
    "Queued": ("Unknown", "Queued"),
    "Succeeded": ("True", "Succeeded"),
    "BackoffLimitExceeded": ("False", "Failed"),
    "StageFailed": ("False", "Failed"),
    "DeadlineExceeded": ("False", "Failed"),
    "InvalidSpec": ("False", "Failed"),
    "Cancelled": ("False", "Cancelled"),
}


def pj(
    name: str,
    reason: str,
    *,
    ns: str = "media",
    message: str = "",
    attempts: int = 1,
    start: str | None = "2026-05-01T11:00:00Z",
    end: str | None = None,
    stages: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    status, phase = OUTCOMES[reason]
    if end is None and status != "Unknown":
        end = "2026-05-01T11:30:00Z"
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "labels": labels or {}},
        "spec": {"stages": [{"name": "fetch"}, {"name": "work"}]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Succeeded", "status": status, "reason": reason, "message": message}],
            "attempts": attempts,
            "startTime": start,
            "completionTime": end,
            "currentStage": "work" if status == "Unknown" else None,
            "stages": stages or [],
            "message": message,
        },
    }


class FakeApi:
    """Lists filter by namespace, the `team` label and `status.phase`; patches merge annotations.
    `old_server`: the field selector is refused as a pre-1.31 API server does. `operator`: each list
    after a patch shows the retry request acknowledged in status.lastRetryRequest."""

    def __init__(self, jobs: list[dict[str, Any]], *, old_server: bool = False, operator: bool = True) -> None:
        self.jobs_by_uid = {j["metadata"]["uid"]: j for j in jobs}
        self.old_server = old_server
        self.operator = operator
        self.lists: list[tuple[str | None, str | None, str | None]] = []
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.refuse: set[str] = set()

    def jobs(
        self, namespace: str | None, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self.lists.append((namespace, label_selector, field_selector))
        if field_selector and self.old_server:
            raise ApiError(
                400,
                "BadRequest",
                f'Unable to find "procjob.dev/v1alpha1, Resource=processingjobs" that '
                f'match label selector "", field selector "{field_selector}": field label not supported: '
                "status.phase",
            )
        found = []
        for job in self.jobs_by_uid.values():
            meta = job["metadata"]
            if namespace is not None and meta["namespace"] != namespace:
                continue
            if label_selector and f"team={meta['labels'].get('team')}" != label_selector:
                continue
            if field_selector and f"status.phase={job['status']['phase']}" != field_selector:
                continue
            if self.operator and RETRY_ANNOTATION in (meta.get("annotations") or {}):
                job["status"]["lastRetryRequest"] = meta["annotations"][RETRY_ANNOTATION]
            found.append(json.loads(json.dumps(job)))
        return found

    def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        if name in self.refuse:
            raise ApiError(403, "Forbidden", f'processingjobs.procjob.dev "{name}" is forbidden')
        self.patches.append((namespace, name, patch))
        job = next(
            j
            for j in self.jobs_by_uid.values()
            if (j["metadata"]["namespace"], j["metadata"]["name"]) == (namespace, name)
        )
        job["metadata"].setdefault("annotations", {}).update(patch["metadata"]["annotations"])
        return job


def run(command: pj_commands.Command, api: FakeApi, **args: Any) -> tuple[int, str, str]:
    defaults: dict[str, Any] = {
        "namespace": None,
        "all_namespaces": False,
        "selector": None,
        "failed": False,
        "output": "table",
        "job": None,
        "all_failed": False,
        "no_wait": False,
        "timeout": 0.0,
    }
    out, err = io.StringIO(), io.StringIO()
    ctx = pj_commands.Context(
        args=argparse.Namespace(**{**defaults, **args}),
        connect=lambda: (api, args.get("namespace") or "media"),  # type: ignore[arg-type,return-value]
        out=out,
        err=err,
        clock=lambda: NOW,
        sleep=lambda _: None,
    )
    code = command(ctx)
    return code, out.getvalue(), err.getvalue()


def world() -> list[dict[str, Any]]:
    failed_work = [
        {"name": "fetch", "state": "Succeeded", "attemptCount": 1},
        {"name": "work", "state": "Failed", "attemptCount": 4},
    ]
    return [
        pj("busy", "Running", start="2026-05-01T11:58:30Z"),
        pj("done", "Succeeded", end="2026-05-01T11:00:42Z"),
        pj(
            "flaky",
            "BackoffLimitExceeded",
            message="stage work failed 4 times (exit 1)",
            attempts=5,
            stages=failed_work,
            end="2026-05-01T11:40:00Z",
            labels={"team": "a"},
        ),
        pj(
            "late",
            "DeadlineExceeded",
            message="deadline\nexceeded",
            attempts=2,
            end="2026-05-01T11:10:00Z",
            stages=[
                {"name": "fetch", "state": "Succeeded", "attemptCount": 1},
                {"name": "work", "state": "Running", "attemptCount": 1},
            ],
        ),
        pj(
            "broken",
            "InvalidSpec",
            message="spec.stages[0].image: required",
            attempts=0,
            start=None,
            end="2026-05-01T11:20:00Z",
        ),
        pj("stopped", "Cancelled", end="2026-05-01T11:05:00Z"),
        pj("other", "StageFailed", ns="batch", message="exit 2", end="2026-05-01T11:15:00Z"),
    ]


# ------------------------------------------------------------------------------------ the rows
def test_the_dead_letter_view_shows_what_failed_why_when_and_after_how_many_attempts() -> None:
    code, out, err = run(pj_commands.cmd_list, FakeApi(world()), failed=True)
    assert (code, err) == (EXIT_OK, "")
    assert out.splitlines() == [
        "NAME     STAGE   REASON                 ATTEMPTS   FAILED                 RETRYABLE   MESSAGE",
        "late     work    DeadlineExceeded       2          2026-05-01T11:10:00Z   yes         deadline exceeded",
        "broken   -       InvalidSpec            0          2026-05-01T11:20:00Z   no          "
        "spec.stages[0].image: required",
        "flaky    work    BackoffLimitExceeded   5          2026-05-01T11:40:00Z   yes         "
        "stage work failed 4 times (exit 1)",
    ]


def test_the_failed_jobs_are_selected_by_the_api_server_with_the_phase_field_selector() -> None:
    api = FakeApi(world())
    run(pj_commands.cmd_list, api, failed=True, selector="team=a")
    assert api.lists == [("media", "team=a", "status.phase=Failed")]


def test_a_server_that_refuses_the_field_selector_gets_a_plain_list_and_the_plugin_picks_the_failed() -> None:
    old, new = FakeApi(world(), old_server=True), FakeApi(world())
    assert run(pj_commands.cmd_list, old, failed=True) == run(pj_commands.cmd_list, new, failed=True)
    assert old.lists == [("media", None, "status.phase=Failed"), ("media", None, None)]


def test_other_api_errors_are_not_taken_for_an_old_server() -> None:
    class Refusing(FakeApi):
        def jobs(self, namespace: str | None, **_: Any) -> list[dict[str, Any]]:
            raise ApiError(400, "BadRequest", "unable to parse requirement: invalid label selector")

    with pytest.raises(ApiError, match="invalid label selector"):
        run(pj_commands.cmd_list, Refusing([]), failed=True, selector="a b")


def test_all_namespaces_adds_the_namespace_column() -> None:
    api = FakeApi(world())
    code, out, _ = run(pj_commands.cmd_list, api, failed=True, all_namespaces=True)
    assert code == EXIT_OK
    assert api.lists == [(None, None, "status.phase=Failed")]
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["media", "late"],
        ["batch", "other"],
        ["media", "broken"],
        ["media", "flaky"],
    ]


def test_json_rows_are_for_programs() -> None:
    code, out, _ = run(pj_commands.cmd_list, FakeApi(world()), failed=True, output="json")
    assert code == EXIT_OK
    document = json.loads(out)
    flaky = next(r for r in document if r["name"] == "flaky")
    assert flaky == {
        "namespace": "media",
        "name": "flaky",
        "uid": "uid-media-flaky",
        "phase": "Failed",
        "reason": "BackoffLimitExceeded",
        "message": "stage work failed 4 times (exit 1)",
        "stage": "work",
        "progress": None,
        "attempts": 5,
        "startTime": "2026-05-01T11:00:00Z",
        "completionTime": "2026-05-01T11:40:00Z",
        "durationSeconds": 2400,
        "retryable": True,
    }
    assert [r["name"] for r in document] == ["late", "broken", "flaky"]


def test_the_plain_list_shows_every_job_with_its_live_duration() -> None:
    code, out, _ = run(pj_commands.cmd_list, FakeApi(world()))
    assert code == EXIT_OK
    table = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert out.splitlines()[0].split() == ["NAME", "PHASE", "REASON", "STAGE", "ATTEMPTS", "DURATION", "MESSAGE"]
    assert sorted(table) == ["broken", "busy", "done", "flaky", "late", "stopped"]
    assert table["busy"][:6] == ["busy", "Running", "Running", "work", "1", "1m30s"]  # to now: still running
    assert table["done"][5] == "42s"
    assert table["broken"][5] == "-"  # never started


def test_nothing_found_is_said_on_stderr_and_json_is_an_empty_list() -> None:
    api = FakeApi([pj("busy", "Running")])
    assert run(pj_commands.cmd_list, api, failed=True, selector="team=a") == (
        EXIT_OK,
        "",
        "No failed processingjobs in namespace media matching team=a.\n",
    )
    assert run(pj_commands.cmd_list, api, failed=True, output="json") == (EXIT_OK, "[]\n", "")


@pytest.mark.parametrize(
    ("stages", "current", "expected"),
    [
        pytest.param(
            [{"name": "a", "state": "Succeeded"}, {"name": "b", "state": "Failed"}],
            None,
            "b",
            id="the stage in state Failed",
        ),
        pytest.param([{"name": "a", "state": "Running", "attemptCount": 1}], "a", "a", id="else the stage in progress"),
        pytest.param(
            [{"name": "a", "attemptCount": 1}, {"name": "b", "state": "Pending"}],
            None,
            "a",
            id="else the last stage that made an attempt",
        ),
        pytest.param([{"name": "a", "state": "Pending"}], None, None, id="none before any attempt"),
    ],
)
def test_the_failed_stage(stages: list[dict[str, Any]], current: str | None, expected: str | None) -> None:
    assert failed_stage({"status": {"stages": stages, "currentStage": current}}) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param("2026-05-01T11:59:00Z", None, 60, id="running: to now"),
        pytest.param("2026-05-01T11:00:00Z", "2026-05-01T11:00:07.9Z", 7, id="finished: to the end, whole seconds"),
        pytest.param(None, None, None, id="not started"),
        pytest.param("yesterday", None, None, id="an unreadable time is no duration"),
        pytest.param("2026-05-01T12:00:05Z", None, 0, id="a start after now (clock skew) is 0, not negative"),
    ],
)
def test_duration_seconds_is_live(start: str | None, end: str | None, expected: int | None) -> None:
    assert duration_seconds({"status": {"startTime": start, "completionTime": end}}, NOW) == expected


def test_render_is_the_rows_table() -> None:
    found = rows([pj("x", "StageFailed", message="")], NOW, failed_only=True)
    assert render(found, failed_only=True, all_namespaces=False, output="table").splitlines()[1].split()[-1] == "-"


# ------------------------------------------------------------------------------------ retry --all-failed
def test_retry_all_failed_marks_every_retryable_failed_job_and_skips_the_rest() -> None:
    api = FakeApi(world())
    code, out, err = run(pj_commands.cmd_retry, api, all_failed=True)
    assert (code, err) == (EXIT_OK, "")
    assert api.lists[0] == ("media", None, "status.phase=Failed")
    assert [(ns, name) for ns, name, _ in api.patches] == [("media", "flaky"), ("media", "late")]
    assert all(p == {"metadata": {"annotations": {RETRY_ANNOTATION: TOKEN}}} for _, _, p in api.patches)
    assert out.splitlines() == [
        "processingjob media/broken: skipped, Failed (InvalidSpec): spec.stages[0].image: required: its spec is"
        " invalid, a retry would fail the same way",
        f"processingjob media/flaky: retry requested ({RETRY_ANNOTATION}={TOKEN})",
        f"processingjob media/late: retry requested ({RETRY_ANNOTATION}={TOKEN})",
        "2 of 3 failed jobs retried, 1 not retryable; they queue for a slot like new jobs (the operator's"
        " --max-running-jobs holds)",
        "all 2 retry requests acknowledged by the operator",
    ]


def test_retry_all_failed_in_every_namespace_with_a_label_selector() -> None:
    jobs = [*world(), pj("other-a", "StageFailed", ns="batch", labels={"team": "a"})]
    api = FakeApi(jobs)
    code, out, _ = run(
        pj_commands.cmd_retry, api, all_failed=True, all_namespaces=True, selector="team=a", no_wait=True
    )
    assert code == EXIT_OK
    assert [(ns, name) for ns, name, _ in api.patches] == [("batch", "other-a"), ("media", "flaky")]
    assert api.lists == [(None, "team=a", "status.phase=Failed")]  # --no-wait: no polling
    assert out.splitlines()[-1].startswith("2 of 2 failed jobs retried, 0 not retryable")


def test_retry_all_failed_with_nothing_failed_says_so() -> None:
    api = FakeApi([pj("busy", "Running")])
    assert run(pj_commands.cmd_retry, api, all_failed=True) == (
        EXIT_OK,
        "no failed processingjobs in namespace media: nothing to retry\n",
        "",
    )
    assert api.patches == []


def test_a_refused_patch_is_reported_and_the_others_go_on() -> None:
    api = FakeApi(world())
    api.refuse.add("flaky")
    code, out, err = run(pj_commands.cmd_retry, api, all_failed=True)
    assert code == EXIT_FAILURE
    assert err == 'kubectl-pj: error: processingjob media/flaky: processingjobs.procjob.dev "flaky" is forbidden\n'
    assert [name for _, name, _ in api.patches] == ["late"]
    assert "1 of 3 failed jobs retried, 1 not retryable, 1 refused by the API server" in out


def test_a_retry_within_the_same_second_as_the_last_gets_a_new_value() -> None:
    jobs = world()
    jobs[2]["metadata"]["annotations"] = {RETRY_ANNOTATION: TOKEN}  # flaky was retried at NOW already
    api = FakeApi(jobs)
    clock = iter([NOW, NOW, datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC)])
    out = io.StringIO()
    ctx = pj_commands.Context(
        args=argparse.Namespace(
            namespace=None, all_namespaces=False, selector=None, job=None, all_failed=True, no_wait=True, timeout=0.0
        ),
        connect=lambda: (api, "media"),  # type: ignore[arg-type,return-value]
        out=out,
        clock=lambda: next(clock),
        sleep=lambda _: None,
    )
    assert pj_commands.cmd_retry(ctx) == EXIT_OK
    assert {p["metadata"]["annotations"][RETRY_ANNOTATION] for _, _, p in api.patches} == {"2026-05-01T12:00:01Z"}


def test_an_operator_that_does_not_acknowledge_in_time_is_an_error_naming_the_jobs() -> None:
    api = FakeApi(world(), operator=False)
    with pytest.raises(PluginError) as raised:
        run(pj_commands.cmd_retry, api, all_failed=True)
    assert raised.value.message == (
        "the retry requests were recorded, but the operator did not acknowledge 2 of them within 0s"
        " (processingjob media/flaky, processingjob media/late; is the operator running and watching their"
        " namespaces?)"
    )


def test_a_job_deleted_while_waiting_needs_no_acknowledgement() -> None:
    api = FakeApi(world(), operator=False)
    original = api.patch_job

    def patch_then_delete(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        job = original(namespace, name, patch)
        del api.jobs_by_uid[job["metadata"]["uid"]]
        return job

    api.patch_job = patch_then_delete  # type: ignore[method-assign]
    code, out, _ = run(pj_commands.cmd_retry, api, all_failed=True)
    assert code == EXIT_OK
    assert out.splitlines()[-1] == "all 2 retry requests acknowledged by the operator"


# ------------------------------------------------------------------------------------ usage
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["retry"], "retry: JOB is required (or --all-failed to retry every failed job)"),
        (["retry", "x", "--all-failed"], "retry: give a JOB or --all-failed, not both"),
        (["retry", "x", "-A"], "retry: -A and -l select jobs for --all-failed; with a JOB, use -n"),
        (["retry", "x", "-l", "team=a"], "retry: -A and -l select jobs for --all-failed; with a JOB, use -n"),
        (
            ["retry", "--all-failed", "-A", "-n", "media"],
            "-A (all namespaces) and -n NAMESPACE cannot be used together",
        ),
        (["list", "-n", "media", "-A"], "-A (all namespaces) and -n NAMESPACE cannot be used together"),
    ],
)
def test_usage_errors_name_the_flags_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plugin.main(argv, environ={"KUBECONFIG": "/nonexistent"}) == EXIT_USAGE
    assert capsys.readouterr().err == f"kubectl-pj: error: {message}\n"


# ------------------------------------------------------------------------------------ the list call
def test_the_list_call_pages_through_continue_tokens_and_passes_the_selectors() -> None:
    seen: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if "continue" not in request.url.params:
            return httpx.Response(200, json={"items": [{"n": 1}, {"n": 2}], "metadata": {"continue": "abc"}})
        return httpx.Response(200, json={"items": [{"n": 3}], "metadata": {}})

    access = Access(
        server="https://api.example:6443", namespace="media", verify=ssl.create_default_context(), headers={}
    )
    api = Api(access, transport=httpx.MockTransport(answer))
    assert api.jobs("media", label_selector="team=a", field_selector="status.phase=Failed") == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]
    assert [u.path for u in seen] == ["/apis/procjob.dev/v1alpha1/namespaces/media/processingjobs"] * 2
    assert dict(seen[0].params) == {"limit": "500", "labelSelector": "team=a", "fieldSelector": "status.phase=Failed"}
    assert seen[1].params["continue"] == "abc"
    seen.clear()
    assert len(api.jobs(None)) == 3
    assert [u.path for u in seen] == ["/apis/procjob.dev/v1alpha1/processingjobs"] * 2
    assert dict(seen[0].params) == {"limit": "500"}
