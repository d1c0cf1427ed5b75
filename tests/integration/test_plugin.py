"""`kubectl pj` against the rig with the operator running: real jobs, real state changes.

The plugin runs as a separate process (`python -m procjob.cli.plugin`, and once through kubectl's
own plugin lookup as `kubectl pj`), with the rig's admin kubeconfig in $KUBECONFIG. Assertions
are on its exit code and output and on the job as the API server shows it.

Logs: here the log tests ask for pods that are gone (the job's podGC deleted them): the plugin
then turns to the operator's archive, and the error names the pod it picked from the job's
status. Live and archived logs (kwok serving a log file) are in tests/e2e/test_logs.py.

The plugin's pure parts (kubeconfig loading, the job's JSON, describe's text, the lifecycle table)
are tested without the rig in tests/unit/cli/.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from procjob.cli import audit
from procjob.cli.pj_api import RETRY_ANNOTATION
from procjob.core.naming import pod_name
from tests.e2e.jobs import job, stage
from tests.e2e.test_queue import running_over_time
from tests.integration.test_history_auth import (
    audit_store,
    history_server,
    reader,
    token_kubeconfig,
)
from tests.support.kube import Kube, Watcher, condition, finished, wait_for
from tests.support.rig import Rig, admin_credentials

ROOT = Path(__file__).resolve().parents[2]

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def pj(rig: Rig) -> Run:
    """Run the plugin as a process: `pj("cancel", "x", "-n", ns)` -> CompletedProcess."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        full_env = {**rig.env, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), full_env.get("PYTHONPATH", "")])
        for key in (
            "PROCJOB_DATABASE_URL",
            "PROCJOB_DATABASE_URL_FILE",
            "PROCJOB_HISTORY_URL",
            "PROCJOB_OPERATOR_SERVICE",
        ):
            if env is None or key not in env:
                full_env.pop(key, None)
        return subprocess.run(
            [sys.executable, "-m", "procjob.cli.plugin", *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )

    return run


def running(kube: Kube, namespace: str, name: str, stage_name: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        body = kube.job(namespace, name)
        for item in ((body or {}).get("status") or {}).get("stages") or []:
            attempts = item.get("attempts") or []
            if item["name"] == stage_name and attempts and attempts[-1]["state"] == "Running":
                return body
        return None

    return check


def long_job(name: str, seconds: int = 600) -> dict[str, Any]:
    return job(name, stage("work", rig={"run_seconds": seconds}), stage("after", rig={"run_seconds": 1}))


# ------------------------------------------------------------------------------- with the rig
def test_kubectl_finds_the_plugin_on_path(rig: Rig, tmp_path: Path) -> None:
    shim = tmp_path / "kubectl-pj"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m procjob.cli.plugin "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {
        **rig.env,
        "PATH": f"{tmp_path}{os.pathsep}{rig.env['PATH']}",
        "PYTHONPATH": str(ROOT / "operator"),
    }
    out = subprocess.run(["kubectl", "pj", "--help"], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert "usage: kubectl pj" in out.stdout
    plugins = subprocess.run(["kubectl", "plugin", "list"], capture_output=True, text=True, env=env, check=False)
    assert str(shim) in plugins.stdout


def test_unknown_jobs_are_reported_by_name(pj: Run, namespace: str, crd: Path) -> None:
    for command in ("cancel", "suspend", "resume", "retry", "describe"):
        out = pj(command, "nope", "-n", namespace)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        assert out.stderr == f"kubectl-pj: error: processingjob {namespace}/nope not found\n", command
    # logs also asks the operator's archive (a deleted job's logs), which needs a bearer token
    out = pj("logs", "nope", "-n", namespace)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stderr.startswith(
        f"kubectl-pj: error: processingjob {namespace}/nope not found (nor could its log archive be read: the"
        " history endpoint needs a bearer token"
    )


def test_cancel_a_running_job(pj: Run, kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    kube.create_job(namespace, long_job("slow"))
    wait_for("stage work running", running(kube, namespace, "slow", "work"), timeout=60)

    out = pj("cancel", "slow", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"processingjob {namespace}/slow: cancel requested (spec.cancel=true)",
        f"processingjob {namespace}/slow: Cancelled",
    ]
    body = kube.job(namespace, "slow")
    assert condition(body)["reason"] == "Cancelled"
    wait_for(
        "the pods to be deleted", lambda: not [p for p in kube.pods(namespace) if p["status"]["phase"] == "Running"]
    )

    again = pj("cancel", "slow", "-n", namespace)
    assert again.returncode == 1
    assert again.stderr == (
        f"kubectl-pj: error: processingjob {namespace}/slow has already finished (Cancelled): cannot cancel it\n"
    )
    resume = pj("resume", "slow", "-n", namespace)
    assert resume.returncode == 1
    assert "has already finished (Cancelled): cannot resume it" in resume.stderr


def test_suspend_and_resume(pj: Run, kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    kube.create_job(namespace, job("pausable", stage("work", rig={"run_seconds": 600}), podGC="Never"))
    wait_for("stage work running", running(kube, namespace, "pausable", "work"), timeout=60)

    not_suspended = pj("resume", "pausable", "-n", namespace)
    assert not_suspended.returncode == 1
    assert not_suspended.stderr.startswith(
        f"kubectl-pj: error: processingjob {namespace}/pausable is not suspended (Running: stage work (1/1)"
    )

    out = pj("suspend", "pausable", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"processingjob {namespace}/pausable: suspend requested (spec.suspend=true)",
        f"processingjob {namespace}/pausable: Suspended: suspended (spec.suspend is true)",
    ]
    body = kube.job(namespace, "pausable")
    assert condition(body, "Suspended")["status"] == "True"
    assert body["status"]["stages"][0]["attempts"][-1]["state"] == "Stopped"

    twice = pj("suspend", "pausable", "-n", namespace, "--no-wait")
    assert twice.returncode == 0
    assert "spec.suspend is already true" in twice.stdout

    resumed = pj("resume", "pausable", "-n", namespace)
    assert resumed.returncode == 0, resumed.stderr
    assert (
        resumed.stdout.splitlines()[0] == f"processingjob {namespace}/pausable: resume requested (spec.suspend=false)"
    )
    body = kube.job(namespace, "pausable")
    assert condition(body, "Suspended")["status"] == "False"
    body = wait_for("attempt 2 running", running(kube, namespace, "pausable", "work"), timeout=60)
    assert [a["state"] for a in body["status"]["stages"][0]["attempts"]] == ["Stopped", "Running"]


def test_describe_shows_the_timeline(pj: Run, kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job(
        "flaky",
        stage("fetch", rig={"run_seconds": 0.2}),
        stage("work", rig={"fail_attempts": 1, "exit_code": 1}),
        retry={"limit": 2, "delaysSeconds": [1]},
        podGC="Never",
    )
    kube.create_job(namespace, manifest)
    body = wait_for("flaky to finish", finished(kube, namespace, "flaky"), timeout=60)
    uid = body["metadata"]["uid"]

    out = pj("describe", "flaky", "-n", namespace)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"Name:         flaky\nNamespace:    {namespace}\nUID:          {uid}\n" in text
    assert "State:        Succeeded: all 2 stages succeeded" in text
    stages = section(text, "Stages:")
    assert stages[0].split() == ["STAGE", "STATE", "ATTEMPTS", "CHARGED", "DURATION", "NEXT", "ATTEMPT", "RUNS"]
    assert stages[1].split()[:4] == ["fetch", "Succeeded", "1", "0"]
    assert stages[2].split()[:4] == ["work", "Succeeded", "2", "1"]
    attempts = section(text, "Attempts:")
    rows = [line.split() for line in attempts[1:]]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("fetch", "1", "Succeeded", pod_name("flaky", uid, "fetch", 1)),
        ("work", "1", "Failed", pod_name("flaky", uid, "work", 1)),
        ("work", "2", "Succeeded", pod_name("flaky", uid, "work", 2)),
    ]
    assert rows[1][-2:] == ["1", "Error"]  # exit code and reason of the failed attempt
    decisions = section(text, "Retry decisions (latest per stage):")
    assert decisions == ["  work: Error, exit 1 matched default -> Retry, next attempt after 1s; 1 charged retry left"]
    conditions = section(text, "Conditions:")
    assert conditions[1].split()[:3] == ["Succeeded", "True", "Succeeded"]
    events = section(text, "Events:")
    assert any("StageSucceeded" in line for line in events)


def section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


def test_logs_of_a_deleted_pod_name_the_pod_and_say_why(pj: Run, kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job("gone", stage("fetch", rig={"run_seconds": 0.2}), stage("work", rig={"run_seconds": 0.2}))
    kube.create_job(namespace, manifest)  # podGC OnSuccess: both pods are deleted when it succeeds
    body = wait_for("gone to finish", finished(kube, namespace, "gone"), timeout=60)
    wait_for("its pods to be deleted", lambda: not kube.pods(namespace), timeout=30)
    work_pod = body["status"]["stages"][1]["attempts"][-1]["podName"]
    fetch_pod = body["status"]["stages"][0]["attempts"][-1]["podName"]

    # The pods are gone, so the plugin turns to the operator's archive, which needs a bearer token
    # (the rig's admin authenticates with a client certificate): the error names the pod and says so.
    out = pj("logs", "gone", "-n", namespace)
    assert out.returncode == 2
    assert out.stderr.startswith(
        f"kubectl-pj: error: logs are not available: pod {work_pod} is gone; its archived log: the history"
        " endpoint needs a bearer token"
    )
    out = pj("logs", "gone", "-n", namespace, "--stage", "fetch", "--attempt", "1", "-f")
    assert out.returncode == 2
    assert f"pod {fetch_pod} is gone" in out.stderr
    out = pj("logs", "gone", "-n", namespace, "--stage", "publish")
    assert out.returncode == 1
    assert (
        out.stderr
        == f"kubectl-pj: error: processingjob {namespace}/gone has no stage 'publish' (stages: fetch, work)\n"
    )


def test_retry_is_refused_unless_the_job_failed(pj: Run, kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    kube.create_job(namespace, long_job("busy"))
    wait_for("stage work running", running(kube, namespace, "busy", "work"), timeout=60)
    out = pj("retry", "busy", "-n", namespace)
    assert out.returncode == 1
    assert out.stderr.startswith(f"kubectl-pj: error: processingjob {namespace}/busy is Running: stage work (1/2)")
    assert out.stderr.endswith(": only a Failed job can be retried\n")
    assert RETRY_ANNOTATION not in (kube.job(namespace, "busy")["metadata"].get("annotations") or {})


def test_retry_reruns_a_failed_job_from_its_failed_stage(pj: Run, kube: Kube, namespace: str, operator: Any) -> None:
    operator(namespace)
    manifest = job(
        "once",
        stage("fetch", rig={"run_seconds": 0.2}),
        stage("work", rig={"fail_attempts": 1, "exit_code": 1, "run_seconds": 0.2}),
        retry={"limit": 0},
        podGC="Never",
    )
    kube.create_job(namespace, manifest)
    failed = wait_for("once to fail", finished(kube, namespace, "once"), timeout=60)
    assert condition(failed)["status"] == "False"
    assert condition(failed)["reason"] in ("BackoffLimitExceeded", "StageFailed")

    out = pj("retry", "once", "-n", namespace)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"processingjob {namespace}/once: retry requested (procjob.dev/retry=")
    assert lines[1].startswith(f"processingjob {namespace}/once: retry acknowledged; ")
    token = kube.job(namespace, "once")["metadata"]["annotations"][RETRY_ANNOTATION]
    assert datetime.strptime(token, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) <= datetime.now(UTC)

    done = wait_for("once to finish again", finished(kube, namespace, "once"), timeout=60)
    assert condition(done)["status"] == "True", condition(done)
    stages = {s["name"]: s for s in done["status"]["stages"]}
    assert stages["fetch"]["attemptCount"] == 1  # not re-run: it had succeeded
    assert [a["state"] for a in stages["work"]["attempts"]] == ["Failed", "Succeeded"]


@pytest.mark.postgres
def test_history_from_the_audit_database_and_with_the_tenants_own_token(
    rig: Rig, pj: Run, kube: Kube, namespace: str, operator: Any, database: str, tmp_path: Path
) -> None:
    """The platform admin reads PostgreSQL with the DSN; a tenant reads the same history from the
    operator's endpoint with their own token (a Role allowing `get` on processingjobs), and a
    tenant of another namespace is refused."""
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(database)
    operator(namespace, "--migrate", "true", env={"PROCJOB_DATABASE_URL_FILE": str(dsn_file)})
    kube.create_job(namespace, job("audited", stage("work", rig={"run_seconds": 0.2})))
    wait_for("audited to finish", finished(kube, namespace, "audited"), timeout=60)

    def flushed() -> bool:
        outbox = (kube.job(namespace, "audited") or {}).get("status", {}).get("audit", {})
        return bool(outbox.get("lastSeq")) and outbox.get("flushedSeq") == outbox.get("lastSeq")

    wait_for("the audit outbox to be flushed", flushed, timeout=60)
    out = pj("history", "audited", "-n", namespace, "-o", "json", env={"PROCJOB_DATABASE_URL_FILE": str(dsn_file)})
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    assert (document["namespace"], document["name"]) == (namespace, "audited")
    assert [(a["stage"], a["attempt"]) for a in document["attempts"]] == [("work", 1)]
    table = pj("history", "audited", "-n", namespace, env={"PROCJOB_DATABASE_URL": database})
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[2].split()[:2] == list(audit.HEADERS[:2])

    tenant = token_kubeconfig(rig, namespace, reader(rig, namespace, "tenant"), tmp_path / "tenant")
    rig.kubectl("create", "serviceaccount", "stranger", "-n", namespace)  # no Role
    stranger_token = rig.kubectl("create", "token", "stranger", "-n", namespace).stdout.strip()
    stranger = token_kubeconfig(rig, namespace, stranger_token, tmp_path / "stranger")
    with history_server(admin_credentials(rig.kubeconfig), audit_store(database)) as served:
        as_tenant = {"KUBECONFIG": str(tenant), "PROCJOB_HISTORY_URL": served.url}
        out = pj("history", "audited", "-o", "json", env=as_tenant)  # the namespace is the kubeconfig's
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == document
        out = pj("history", "audited", "--history-url", served.url, env={"KUBECONFIG": str(tenant)})
        assert out.returncode == 0, out.stderr
        assert out.stdout == table.stdout
        out = pj("history", "audited", env={"KUBECONFIG": str(stranger), "PROCJOB_HISTORY_URL": served.url})
        assert out.returncode == 1
        assert out.stderr == (
            f"kubectl-pj: error: the history endpoint at {served.url} answered 403: system:serviceaccount:{namespace}:"
            f"stranger may not get processingjobs.procjob.dev {namespace}/audited\n"
        )


def test_history_through_the_service_proxy_needs_the_right_and_says_to_set_the_history_url(
    rig: Rig, pj: Run, namespace: str, tmp_path: Path
) -> None:
    """Without a URL or DSN the plugin asks the API server's service proxy. On the rig the
    operator's Service can have no endpoint (its pods are kwok's), so this checks the two refusals
    a tenant can meet before the operator answers, and that the chart's opt-in right
    (history.serviceProxyGroups) gets a tenant past the API server's authorisation."""
    tenant = token_kubeconfig(rig, namespace, reader(rig, namespace, "tenant"), tmp_path / "tenant")
    out = pj("history", "audited", env={"KUBECONFIG": str(tenant)})
    assert out.returncode == 2
    assert "service proxy to procjob-system/procjob-metrics" in out.stderr
    assert 'cannot get resource "services/proxy"' in out.stderr
    assert "set --history-url" in out.stderr

    release = f"pj-{namespace}"
    rendered = subprocess.run(
        [
            "helm",
            "template",
            release,
            str(ROOT / "charts" / "procjob"),
            "--namespace",
            namespace,
            "--set",
            f"history.serviceProxyGroups={{system:serviceaccounts:{namespace}}}",
        ],
        capture_output=True,
        text=True,
        env=rig.env,
        timeout=120,
        check=True,
    ).stdout
    wanted = {
        ("Service", f"{release}-procjob-metrics"),
        ("Role", f"{release}-procjob-history-proxy"),
        ("RoleBinding", f"{release}-procjob-history-proxy"),
    }
    objects = [o for o in yaml.safe_load_all(rendered) if o and (o["kind"], o["metadata"]["name"]) in wanted]
    assert len(objects) == 3
    rig.apply(yaml.safe_dump_all(objects))
    service = f"{namespace}/{release}-procjob-metrics"
    out = pj("history", "audited", "--operator-service", service, env={"KUBECONFIG": str(tenant)})
    assert out.returncode == 2
    assert "no endpoints available" in out.stderr  # authorised by the API server, then no pod to proxy to
    assert "set --history-url" in out.stderr


def test_history_needs_a_bearer_token(pj: Run) -> None:
    out = pj("history", "anything", "-n", "demo")  # the rig's admin: a client certificate
    assert out.returncode == 2
    assert "needs a bearer token" in out.stderr
    assert "client certificate" in out.stderr


# ------------------------------------------------------------- finding jobs by state, bulk retry
# Jobs whose status is written here through the status subresource, as the operator would: no
# operator runs, so what the API server selects and what the plugin marks is all there is to see.
OUTCOMES = {  # Succeeded condition reason -> (status, phase)
    "Running": ("Unknown", "Running"),
    "Succeeded": ("True", "Succeeded"),
    "BackoffLimitExceeded": ("False", "Failed"),
    "DeadlineExceeded": ("False", "Failed"),
    "InvalidSpec": ("False", "Failed"),
    "Cancelled": ("False", "Cancelled"),
}


def with_status(kube: Kube, namespace: str, name: str, reason: str, labels: dict[str, str] | None = None) -> None:
    manifest = job(name, stage("work"))
    manifest["metadata"]["labels"] = labels or {}
    kube.create_job(namespace, manifest)
    status, phase = OUTCOMES[reason]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "phase": phase,
        "conditions": [
            {
                "type": "Succeeded",
                "status": status,
                "reason": reason,
                "message": f"{name} {reason}",
                "lastTransitionTime": now,
            }
        ],
        "startTime": now,
        "completionTime": None if status == "Unknown" else now,
        "durationSeconds": 0,
        "attempts": 1,
        "message": f"{name} {reason}",
    }
    kube.request(
        "PATCH",
        f"/apis/procjob.dev/v1alpha1/namespaces/{namespace}/processingjobs/{name}/status",
        json_body={"status": body},
        content_type="application/merge-patch+json",
    )


def dead_letter_world(kube: Kube, namespace: str) -> None:
    with_status(kube, namespace, "limit", "BackoffLimitExceeded", {"team": "a"})
    with_status(kube, namespace, "late", "DeadlineExceeded", {"team": "b"})
    with_status(kube, namespace, "broken", "InvalidSpec", {"team": "a"})
    with_status(kube, namespace, "fine", "Succeeded", {"team": "a"})
    with_status(kube, namespace, "busy", "Running", {"team": "a"})
    with_status(kube, namespace, "stopped", "Cancelled", {"team": "a"})


def test_the_api_server_selects_jobs_by_phase(rig: Rig, pj: Run, kube: Kube, namespace: str, crd: Path) -> None:
    dead_letter_world(kube, namespace)

    def names(*args: str) -> list[str]:
        out = rig.kubectl("get", "pj", "-n", namespace, *args, "-o", "name").stdout.split()
        return sorted(n.rsplit("/", 1)[-1] for n in out)

    assert names("--field-selector", "status.phase=Failed") == ["broken", "late", "limit"]
    assert names("--field-selector", "status.phase=Failed", "-l", "team=a") == ["broken", "limit"]
    assert names("--field-selector", "status.phase!=Failed") == ["busy", "fine", "stopped"]
    assert names("--field-selector", "status.phase=Cancelled") == ["stopped"]
    # a field that is not selectable is refused as an older API server refuses status.phase: the
    # words pj_commands.list_jobs looks for to fall back to filtering on the client
    refused = rig.kubectl("get", "pj", "-n", namespace, "--field-selector", "spec.priority=1", check=False)
    assert refused.returncode != 0
    assert "field label not supported: spec.priority" in refused.stderr
    # the README's alternative for API servers without selectable fields
    jsonpath = '{range .items[?(@.status.phase=="Failed")]}{.metadata.name}{"\\n"}{end}'
    picked = rig.kubectl("get", "pj", "-n", namespace, "-o", f"jsonpath={jsonpath}").stdout.split()
    assert sorted(picked) == ["broken", "late", "limit"]

    out = pj("list", "--failed", "-n", namespace, "-o", "json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert sorted(rows) == ["broken", "late", "limit"]
    assert (rows["limit"]["reason"], rows["limit"]["message"], rows["limit"]["attempts"]) == (
        "BackoffLimitExceeded",
        "limit BackoffLimitExceeded",
        1,
    )
    assert [rows[n]["retryable"] for n in ("broken", "late", "limit")] == [False, True, True]
    table = pj("list", "--failed", "-A", "-l", "team=a")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAMESPACE", "NAME", "STAGE"]
    assert sorted(line.split()[1] for line in lines[1:] if line.split()[0] == namespace) == ["broken", "limit"]

    # the README's plain-kubectl bulk retry marks every Failed job (InvalidSpec too: the operator ignores it)
    rig.kubectl(
        "annotate",
        "pj",
        "-n",
        namespace,
        "--field-selector",
        "status.phase=Failed",
        "--overwrite",
        f"{RETRY_ANNOTATION}=2026-05-01T12:00:00Z",
    )
    marked = [
        j["metadata"]["name"] for j in kube.jobs(namespace) if RETRY_ANNOTATION in j["metadata"].get("annotations", {})
    ]
    assert sorted(marked) == ["broken", "late", "limit"]


def test_retry_all_failed_marks_every_retryable_failed_job(pj: Run, kube: Kube, namespace: str, crd: Path) -> None:
    dead_letter_world(kube, namespace)

    def marked() -> list[str]:
        return sorted(
            j["metadata"]["name"]
            for j in kube.jobs(namespace)
            if RETRY_ANNOTATION in (j["metadata"].get("annotations") or {})
        )

    out = pj("retry", "--all-failed", "-n", namespace, "-l", "team=b", "--no-wait")
    assert out.returncode == 0, out.stderr
    assert marked() == ["late"]

    out = pj("retry", "--all-failed", "-n", namespace, "--timeout", "1")
    assert marked() == ["late", "limit"]  # not InvalidSpec, not the succeeded, running or cancelled ones
    lines = out.stdout.splitlines()
    assert lines[0] == (
        f"processingjob {namespace}/broken: skipped, Failed (InvalidSpec): broken InvalidSpec: its spec is invalid,"
        " a retry would fail the same way"
    )
    assert [line.split(":")[0] for line in lines[1:3]] == [
        f"processingjob {namespace}/late",
        f"processingjob {namespace}/limit",
    ]
    assert lines[3].startswith("2 of 3 failed jobs retried, 1 not retryable")
    # no operator runs here, so nothing acknowledges: the plugin says so and fails
    assert out.returncode == 1
    assert "the operator did not acknowledge 2 of them within 1s" in out.stderr


def test_retry_all_failed_goes_through_the_queue(pj: Run, kube: Kube, namespace: str, operator: Any) -> None:
    """Four jobs fail; `retry --all-failed` re-runs all of them, never more than --max-running-jobs at once."""
    watcher = Watcher(kube, f"/apis/procjob.dev/v1alpha1/namespaces/{namespace}/processingjobs")
    operator(namespace, "--max-running-jobs", "1")
    names = [f"dl{i}" for i in range(4)]
    for name in names:
        once = stage("work", rig={"fail_attempts": 1, "exit_code": 1, "run_seconds": 0.5})
        kube.create_job(namespace, job(name, once, retry={"limit": 0}))
    for name in names:
        wait_for(f"{name} to fail", finished(kube, namespace, name), timeout=90)
    listed = pj("list", "--failed", "-n", namespace, "-o", "json")
    assert sorted(r["name"] for r in json.loads(listed.stdout)) == names
    watcher.start()

    out = pj("retry", "--all-failed", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "all 4 retry requests acknowledged by the operator"

    def succeeded_all() -> bool:
        return all(condition(kube.job(namespace, n)).get("status") == "True" for n in names)

    wait_for("every retried job to succeed", succeeded_all, timeout=120)
    most, starts = running_over_time(watcher.stop())
    assert most <= 1, f"{most} retried jobs ran at once with --max-running-jobs 1"
    assert all(len(starts[f"{namespace}/{n}"]) == 2 for n in names)  # failed once, then again after the retry
    done = [kube.job(namespace, n) or {} for n in names]
    assert all(isinstance(d["status"].get("durationSeconds"), int) for d in done)
    empty = pj("list", "--failed", "-n", namespace)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert empty.stderr == f"No failed processingjobs in namespace {namespace}.\n"
