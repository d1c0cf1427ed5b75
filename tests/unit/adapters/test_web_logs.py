"""The archived-logs endpoints (procjob.adapters.web) with the review authorizer over fake reviews:
a caller needs `get` on the job and `get pods/log` in its namespace before anything is looked up;
the index is JSON, a log is its bytes with headers that describe it; without a database the answer
says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from procjob.adapters.audit import ArchivedLog, LogIndex
from procjob.adapters.authn import ReviewAuthorizer
from procjob.adapters.web import NO_DATABASE, build_app

LOGS = "/api/v1/namespaces/{ns}/processingjobs/{name}/logs"
ARCHIVED = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


class FakeReviews:
    """alice may get job1 and pods/log in team-a; bob may get job1 but not read pod logs."""

    def __init__(self) -> None:
        self.users = {"alice-token": "alice", "bob-token": "bob"}
        self.access_reviews: list[dict[str, str]] = []

    async def token_review(self, token: str) -> dict[str, Any]:
        user = self.users.get(token)
        if user is None:
            return {"authenticated": False}
        return {"authenticated": True, "user": {"username": user, "groups": ["system:authenticated"]}}

    async def subject_access_review(self, spec: dict[str, Any]) -> dict[str, Any]:
        attributes = spec["resourceAttributes"]
        self.access_reviews.append({"user": spec["user"], **attributes})
        if attributes["namespace"] != "team-a":
            return {"allowed": False}
        if attributes["resource"] == "processingjobs":
            return {"allowed": attributes.get("name") == "job1"}
        return {"allowed": spec["user"] == "alice", "reason": "" if spec["user"] == "alice" else "no RBAC rule"}


def entry(**fields: Any) -> ArchivedLog:
    values = {
        "job_uid": "uid-1",
        "namespace": "team-a",
        "name": "job1",
        "stage": "step",
        "attempt": 1,
        "container": "main",
        "pod_name": "job1-step-a1-uid1",
        "pod_uid": "pod-uid",
        "content": b"last words\n\x00\xff",
        "received_bytes": 5000,
        "truncated": True,
        "size": 13,
        "archived_at": ARCHIVED,
        **fields,
    }
    return ArchivedLog.model_validate(values)


class FakeLogs:
    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    async def log_index(self, namespace: str, name: str, uid: str | None = None) -> LogIndex | None:
        self.asked.append(("index", namespace, name, uid))
        return None if name == "missing" else LogIndex("uid-1", namespace, name, (entry(),))

    async def read_log(
        self,
        namespace: str,
        name: str,
        stage: str,
        attempt: int,
        container: str,
        uid: str | None = None,
        item: int | None = None,
    ) -> ArchivedLog | None:
        self.asked.append(("log", namespace, name, stage, attempt, container, uid, item))
        if item is not None:
            return (
                entry(stage="thumbs", item=item, pod_name=f"job1-thumbs-i{item}-a1-uid1") if stage == "thumbs" else None
            )
        if stage == "broken":
            raise OSError("audit read_log: PostgreSQL at postgresql://h/db did not answer in time")
        if attempt == 2:
            return entry(attempt=2, content=b"", error='400 BadRequest: container "main" is waiting to start')
        return entry() if (stage, attempt) == ("step", 1) else None


async def client_for(logs: FakeLogs | None) -> tuple[TestClient[Any, Any], FakeReviews]:
    reviews = FakeReviews()
    authorizer = ReviewAuthorizer(reviews)
    app = build_app(
        CollectorRegistry(),
        live=lambda: (True, ""),
        ready=lambda: (True, ""),
        history=None,
        authorize=authorizer,
        logs=logs,
        authorize_logs=authorizer.logs,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client, reviews


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient[Any, Any], FakeReviews, FakeLogs]]:
    logs = FakeLogs()
    client, reviews = await client_for(logs)
    try:
        yield client, reviews, logs
    finally:
        await client.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_reader_of_pod_logs_gets_the_index_and_the_bytes(served: Any) -> None:
    client, reviews, logs = served
    resp = await client.get(LOGS.format(ns="team-a", name="job1"), headers=bearer("alice-token"))
    assert resp.status == 200
    document = await resp.json()
    assert document["uid"] == "uid-1"
    assert document["logs"][0] == {
        "jobUid": "uid-1",
        "namespace": "team-a",
        "name": "job1",
        "stage": "step",
        "item": None,
        "attempt": 1,
        "container": "main",
        "podName": "job1-step-a1-uid1",
        "podUid": "pod-uid",
        "receivedBytes": 5000,
        "truncated": True,
        "complete": True,
        "error": None,
        "finishedAt": None,
        "size": 13,
        "archivedAt": "2026-05-01T10:00:00Z",
    }
    resp = await client.get(LOGS.format(ns="team-a", name="job1") + "/step/1?uid=uid-1", headers=bearer("alice-token"))
    assert resp.status == 200
    assert await resp.read() == b"last words\n\x00\xff"
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["X-Procjob-Log-Pod"] == "job1-step-a1-uid1"
    assert resp.headers["X-Procjob-Log-Truncated"] == "true"
    assert resp.headers["X-Procjob-Log-Received-Bytes"] == "5000"
    assert logs.asked[-1] == ("log", "team-a", "job1", "step", 1, "main", "uid-1", None)
    assert "X-Procjob-Log-Item" not in resp.headers
    pod_log_reviews = [r for r in reviews.access_reviews if r["resource"] == "pods"]
    assert pod_log_reviews[0] == {
        "user": "alice",
        "namespace": "team-a",
        "verb": "get",
        "group": "",
        "resource": "pods",
        "subresource": "log",
    }


async def test_an_item_of_a_fanned_out_stage_is_read_by_its_index(served: Any) -> None:
    client, _, logs = served
    resp = await client.get(LOGS.format(ns="team-a", name="job1") + "/thumbs/1?item=7", headers=bearer("alice-token"))
    assert resp.status == 200
    assert resp.headers["X-Procjob-Log-Item"] == "7"
    assert resp.headers["X-Procjob-Log-Pod"] == "job1-thumbs-i7-a1-uid1"
    assert logs.asked[-1] == ("log", "team-a", "job1", "thumbs", 1, "main", None, 7)
    resp = await client.get(LOGS.format(ns="team-a", name="job1") + "/step/1?item=0", headers=bearer("alice-token"))
    assert resp.status == 404
    assert (await resp.json())["error"] == (
        "no archived log for processingjob team-a/job1 stage step item 0 attempt 1 container main"
    )


@pytest.mark.parametrize("item", ["-1", "x", "99999999999"])
async def test_an_item_that_is_not_an_index_is_refused(served: Any, item: str) -> None:
    client, _, logs = served
    resp = await client.get(
        LOGS.format(ns="team-a", name="job1") + f"/thumbs/1?item={item}", headers=bearer("alice-token")
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == f"item must be a non-negative integer, not {item!r}"
    assert [a for a in logs.asked if a[0] == "log"] == []


async def test_a_reader_of_the_job_without_pods_log_is_refused_before_any_lookup(served: Any) -> None:
    client, _, logs = served
    for path in ("", "/step/1"):
        resp = await client.get(LOGS.format(ns="team-a", name="job1") + path, headers=bearer("bob-token"))
        assert resp.status == 403
        assert (await resp.json())["error"] == "bob may not get pods/log in namespace team-a (no RBAC rule)"
    resp = await client.get(LOGS.format(ns="team-b", name="job1"), headers=bearer("alice-token"))
    assert resp.status == 403
    assert (await resp.json())["error"] == "alice may not get processingjobs.procjob.dev team-b/job1"
    resp = await client.get(LOGS.format(ns="team-a", name="job1"))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert logs.asked == []


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        pytest.param(
            "/step/3",
            404,
            "no archived log for processingjob team-a/job1 stage step attempt 3 container main",
            id="none",
        ),
        pytest.param(
            "/step/2",
            404,
            "the log of processingjob team-a/job1 stage step attempt 2 container main could not be archived:"
            ' 400 BadRequest: container "main" is waiting to start',
            id="unavailable",
        ),
        pytest.param("/step/0", 400, "attempt must be a positive integer, not '0'", id="attempt 0"),
        pytest.param("/step/x", 400, "attempt must be a positive integer, not 'x'", id="not a number"),
        pytest.param(
            "/other/1",
            404,
            "no archived log for processingjob team-a/job1 stage other attempt 1 container main",
            id="stage",
        ),
        pytest.param(
            "/broken/1", 503, "audit read_log: PostgreSQL at postgresql://h/db did not answer in time", id="down"
        ),
    ],
)
async def test_what_cannot_be_served_says_why(served: Any, path: str, status: int, message: str) -> None:
    client, _, _ = served
    resp = await client.get(LOGS.format(ns="team-a", name="job1") + path, headers=bearer("alice-token"))
    assert resp.status == status
    assert (await resp.json())["error"] == message


async def test_an_unknown_job_has_no_index(served: Any) -> None:
    client, _, _ = served
    resp = await client.get(LOGS.format(ns="team-a", name="missing"), headers=bearer("alice-token"))
    assert resp.status == 403  # alice may not get it: nobody learns whether it exists


async def test_without_a_database_the_answer_says_logs_are_not_archived() -> None:
    client, _ = await client_for(None)
    try:
        for path in ("", "/step/1"):
            resp = await client.get(LOGS.format(ns="team-a", name="job1") + path, headers=bearer("alice-token"))
            assert resp.status == 404
            assert await resp.json() == {"error": NO_DATABASE, "reason": "NotArchived"}
        resp = await client.get(LOGS.format(ns="team-a", name="job1"), headers=bearer("bob-token"))
        assert resp.status == 403  # still only for readers of pod logs
    finally:
        await client.close()


async def test_without_an_authorizer_nobody_is_served() -> None:
    app = build_app(
        CollectorRegistry(), live=lambda: (True, ""), ready=lambda: (True, ""), history=None, logs=FakeLogs()
    )
    async with TestClient(TestServer(app)) as client:
        resp = await client.get(LOGS.format(ns="team-a", name="job1"), headers=bearer("alice-token"))
        assert resp.status == 503
