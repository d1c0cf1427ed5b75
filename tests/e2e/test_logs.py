"""The log archive on the rig: a finished attempt's log is archived before podGC deletes its pod,
and `kubectl pj logs JOB --stage S --attempt N` reads it from the operator once the pod is gone —
only for callers who may `get pods/log` in the job's namespace; each item of a fanned-out stage is
archived and read (`--item K`) on its own; without a database the plugin says that logs are not
archived.

kwok plays the kubelet here: the rig starts it with its kubelet API on 127.0.0.1 (the fake Nodes'
kubelet port) and its `Logs` CRD, so a `Logs` object named after a pod makes the API server's
`pods/log` serve a file this test writes (CRI format), through the same path as a real kubelet.
A pod without one answers 400 ("no logs found"), which the archive records as unavailable. A rig
started before kwok served logs (hack/rig: RIG_KWOK_PORT) skips these tests: restart it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from procjob.adapters.audit import migrate
from procjob.core.naming import pod_name
from tests.e2e.jobs import job, stage
from tests.integration.test_history_auth import token_for, token_kubeconfig
from tests.support.kube import Kube, condition, finished, wait_for
from tests.support.operator import rig_serves_pod_logs
from tests.support.rig import Rig

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
KWOK = "kwok.x-k8s.io/v1alpha1"
MAX_BYTES = 65536


@pytest.fixture
def kwok_logs(rig: Rig) -> None:
    """Skip unless the rig's kwok serves pod logs (its kubelet API answers, its Logs CRD exists)."""
    if not rig_serves_pod_logs(rig):
        pytest.skip("this rig was started before kwok served pod logs (hack/rig, RIG_KWOK_PORT): restart the rig")


def cri_log(path: Path, lines: list[str]) -> Path:
    """A container log file as the kubelet keeps it (CRI format), which kwok serves as it is."""
    path.write_text(
        "".join(f"2026-12-02T18:00:{i % 60:02d}.000000000Z stdout F {line}\n" for i, line in enumerate(lines))
    )
    return path


def serve_log(rig: Rig, namespace: str, pod: str, file: Path) -> None:
    logs = {"containers": ["main"], "logsFile": str(file)}
    rig.apply({"apiVersion": KWOK, "kind": "Logs", "metadata": {"name": pod}, "spec": {"logs": [logs]}}, namespace)


def tenant(rig: Rig, namespace: str, account: str, *, pod_logs: bool, tmp_path: Path) -> Path:
    """A service account that may get ProcessingJobs (and pods/log, when told) in `namespace`: its kubeconfig."""
    rules: list[dict[str, Any]] = [{"apiGroups": ["procjob.dev"], "resources": ["processingjobs"], "verbs": ["get"]}]
    if pod_logs:
        rules.append({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]})
    rbac = "rbac.authorization.k8s.io/v1"
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}},
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": account, "namespace": namespace}, "rules": rules},
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": {"name": account, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]
    rig.apply(yaml.safe_dump_all(objects))
    return token_kubeconfig(rig, namespace, token_for(rig, namespace, account), tmp_path / f"{account}.kubeconfig")


def pj(rig: Rig, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`kubectl pj` as a tenant, as a process; stdout as bytes (logs are bytes)."""
    env = {k: v for k, v in rig.env.items() if not k.startswith("PROCJOB_")}
    env["KUBECONFIG"] = str(kubeconfig)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "procjob.cli.plugin", *args], env=env, capture_output=True, timeout=90, check=False
    )


def test_logs_are_read_from_the_archive_once_podgc_deleted_the_pods(
    rig: Rig, kube: Kube, namespace: str, operator: Any, database: str, tmp_path: Path, kwok_logs: None
) -> None:
    migrate(database)
    op = operator(namespace, "--log-archive-max-bytes", str(MAX_BYTES), env={"PROCJOB_DATABASE_URL": database})
    url = f"http://127.0.0.1:{op.port}"
    manifest = job(
        "flaky",
        stage("fetch", rig={"run_seconds": 0.5}),  # no log file: kwok answers 400, recorded as unavailable
        stage("work", rig={"fail_attempts": 1, "exit_code": 1, "run_seconds": 3}),
        retry={"limit": 1, "delaysSeconds": [1]},
    )  # podGC: OnSuccess (the default) deletes both of work's pods once the job succeeds
    uid = kube.create_job(namespace, manifest)["metadata"]["uid"]
    failed = [f"record {i:06d} of the failed attempt, padded to a realistic width" for i in range(4000)]
    failed.append("attempt 1 failed: boom")
    serve_log(rig, namespace, pod_name("flaky", uid, "work", 1), cri_log(tmp_path / "a1.log", failed))
    serve_log(rig, namespace, pod_name("flaky", uid, "work", 2), cri_log(tmp_path / "a2.log", ["attempt 2 ok"]))

    done = wait_for("flaky to finish", finished(kube, namespace, "flaky"), timeout=90)
    assert condition(done)["status"] == "True", condition(done)
    wait_for("podGC to delete the pods once their logs are archived", lambda: not kube.pods(namespace), timeout=60)

    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT stage, attempt, container, size, received_bytes, truncated, error IS NULL FROM job_logs"
            " WHERE job_uid = %s ORDER BY stage, attempt",
            [uid],
        ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("fetch", 1, "main"), ("work", 1, "main"), ("work", 2, "main")]
    assert rows[0][6] is False  # fetch: no log to read, said so
    assert rows[1][3] <= MAX_BYTES < rows[1][4]  # work 1: the last 64 KiB of a longer log
    assert rows[1][5] is True
    assert rows[2][3:] == (len("attempt 2 ok\n"), len("attempt 2 ok\n"), False, True)

    reader = tenant(rig, namespace, "log-reader", pod_logs=True, tmp_path=tmp_path)
    out = pj(rig, reader, "logs", "flaky", "--stage", "work", "--attempt", "1", "--history-url", url)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.endswith(
        b"record 003999 of the failed attempt, padded to a realistic width\nattempt 1 failed: boom\n"
    )
    assert out.stdout.startswith(b"record ")  # from its first whole line
    assert 0 < len(out.stdout) <= MAX_BYTES
    header = out.stderr.decode().splitlines()[0]
    assert header.startswith(f"==> pod {pod_name('flaky', uid, 'work', 1)} (stage work, attempt 1) is gone;")
    assert "archived log: container main, the last" in header

    out = pj(rig, reader, "logs", "flaky", "--history-url", url)  # the latest attempt of the last stage
    assert (out.returncode, out.stdout) == (0, b"attempt 2 ok\n")
    out = pj(rig, reader, "logs", "flaky", "--stage", "work", "--attempt", "1", "--tail", "1", "--history-url", url)
    assert out.stdout == b"attempt 1 failed: boom\n"
    out = pj(rig, reader, "logs", "flaky", "--stage", "fetch", "--history-url", url)
    assert out.returncode == 1
    assert 'could not be archived: 400 BadRequest: no logs found for container "main"' in out.stderr.decode()

    # Tenant isolation: a reader of the job without pods/log is refused by the API server for the live
    # log, and by the operator for the archive, as `kubectl logs` would be.
    job_only = tenant(rig, namespace, "job-reader", pod_logs=False, tmp_path=tmp_path)
    out = pj(rig, job_only, "logs", "flaky", "--attempt", "1", "--stage", "work", "--history-url", url)
    assert out.returncode == 1
    assert 'cannot get resource "pods/log"' in out.stderr.decode()
    assert out.stdout == b""
    out = pj(rig, job_only, "logs", "flaky", "--attempt", "1", "--stage", "work", "--archived", "--history-url", url)
    assert out.returncode == 1
    assert f"job-reader may not get pods/log in namespace {namespace}" in out.stderr.decode()
    assert out.stdout == b""

    metrics = op.metrics()
    assert "procjob_log_archived_total 2.0" in metrics
    assert 'procjob_log_archive_failures_total{reason="unavailable"} 1.0' in metrics

    # The job deleted: its archive still answers, the latest attempt by default.
    kube.delete_job(namespace, "flaky")
    wait_for("flaky to be deleted", lambda: kube.job(namespace, "flaky") is None, timeout=60)
    out = pj(rig, reader, "logs", "flaky", "--history-url", url)
    assert (out.returncode, out.stdout) == (0, b"attempt 2 ok\n")


def test_each_item_of_a_fanned_out_stage_has_its_logs_archived(
    rig: Rig, kube: Kube, namespace: str, operator: Any, database: str, tmp_path: Path, kwok_logs: None
) -> None:
    """Three items' attempt 1: three pods, three archived logs (they once collided on the attempt, and
    only the first item's log was kept), each read back by `--item`."""
    migrate(database)
    op = operator(namespace, env={"PROCJOB_DATABASE_URL": database})
    url = f"http://127.0.0.1:{op.port}"
    manifest = job("fan", stage("thumbs", forEach=["a", "b", "c"], parallelism=3, rig={"run_seconds": 3}))
    uid = kube.create_job(namespace, manifest)["metadata"]["uid"]
    for item in range(3):
        log = cri_log(tmp_path / f"i{item}.log", [f"item {item} done"])
        serve_log(rig, namespace, pod_name("fan", uid, "thumbs", 1, item), log)

    done = wait_for("fan to finish", finished(kube, namespace, "fan"), timeout=60)
    assert condition(done)["status"] == "True", condition(done)
    wait_for("podGC to delete the pods once their logs are archived", lambda: not kube.pods(namespace), timeout=60)
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT item, attempt, container, content FROM job_logs WHERE job_uid = %s ORDER BY item", [uid]
        ).fetchall()
    assert rows == [(i, 1, "main", f"item {i} done\n".encode()) for i in range(3)]

    reader = tenant(rig, namespace, "log-reader", pod_logs=True, tmp_path=tmp_path)
    out = pj(rig, reader, "logs", "fan", "--item", "2", "--history-url", url)
    assert (out.returncode, out.stdout) == (0, b"item 2 done\n"), out.stderr.decode()
    header = out.stderr.decode().splitlines()[0]
    assert header.startswith(
        f"==> pod {pod_name('fan', uid, 'thumbs', 1, 2)} (stage thumbs, item 2, attempt 1) is gone;"
    )
    out = pj(rig, reader, "logs", "fan", "--history-url", url)
    assert out.returncode == 1
    assert "stage thumbs is fanned out over 3 items (forEach): name one with --item K" in out.stderr.decode()

    kube.delete_job(namespace, "fan")
    wait_for("fan to be deleted", lambda: kube.job(namespace, "fan") is None, timeout=60)
    out = pj(rig, reader, "logs", "fan", "--item", "0", "--history-url", url)
    assert (out.returncode, out.stdout) == (0, b"item 0 done\n"), out.stderr.decode()


def test_the_archive_serves_only_readers_of_pod_logs_in_the_jobs_namespace(
    rig: Rig, kube: Kube, namespace: str, operator: Any, database: str, tmp_path: Path, kwok_logs: None
) -> None:
    """The endpoint itself, with tenants' own tokens: another namespace's reader of pod logs is refused."""
    migrate(database)
    op = operator(namespace, env={"PROCJOB_DATABASE_URL": database})
    uid = kube.create_job(namespace, job("quiet", stage("step", rig={"run_seconds": 2})))["metadata"]["uid"]
    serve_log(
        rig, namespace, pod_name("quiet", uid, "step", 1), cri_log(tmp_path / "q.log", ["a secret of the tenant"])
    )
    wait_for("quiet to finish", finished(kube, namespace, "quiet"), timeout=60)
    wait_for("its pod to be deleted", lambda: not kube.pods(namespace), timeout=60)
    path = f"/api/v1/namespaces/{namespace}/processingjobs/quiet/logs/step/1?container=main"
    tenant(rig, namespace, "log-reader", pod_logs=True, tmp_path=tmp_path)
    mine = op.get(path, token=token_for(rig, namespace, "log-reader"))
    assert (mine.status_code, mine.content) == (200, b"a secret of the tenant\n")
    other = f"{namespace}-other"
    rig.kubectl("create", "namespace", other)
    try:
        rig.kubectl("wait", "--for=create", "serviceaccount/default", "-n", other, "--timeout=60s", timeout=70)
        tenant(rig, other, "outsider", pod_logs=True, tmp_path=tmp_path)
        theirs = op.get(path, token=token_for(rig, other, "outsider"))
    finally:
        rig.kubectl("delete", "namespace", other, "--wait=false", check=False)
    assert theirs.status_code == 403
    assert b"secret" not in theirs.content
    assert theirs.json()["error"].endswith(f"may not get processingjobs.procjob.dev {namespace}/quiet")
    assert op.get(path).status_code == 401


def test_without_a_database_the_plugin_says_logs_are_not_archived(
    rig: Rig, kube: Kube, namespace: str, operator: Any, tmp_path: Path
) -> None:
    op = operator(namespace)
    kube.create_job(namespace, job("plain", stage("work", rig={"run_seconds": 0.2})))
    wait_for("plain to finish", finished(kube, namespace, "plain"), timeout=60)
    wait_for("podGC to delete its pod at once", lambda: not kube.pods(namespace), timeout=30)
    reader = tenant(rig, namespace, "log-reader", pod_logs=True, tmp_path=tmp_path)
    out = pj(rig, reader, "logs", "plain", "--history-url", f"http://127.0.0.1:{op.port}")
    assert out.returncode == 1
    message = out.stderr.decode()
    assert "is gone, and pod logs are not archived: the operator runs without a database" in message
