"""The history endpoint's guard (procjob.adapters.authn and web) against a fake review client.

The reviews themselves are checked against a real API server in
tests/integration/test_history_auth.py; here: the HTTP outcomes, what is cached and for how long,
the rate limit, and that concurrent askers share one review.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from procjob.adapters.authn import RateLimiter, ReviewAuthorizer, TTLCache, Verdict, token_key
from procjob.adapters.web import PROXY_TOKEN_HEADER, build_app

HISTORY = "/api/v1/namespaces/{ns}/processingjobs/{name}/history"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeReviews:
    """Tokens map to users; `grants` holds (user, namespace, name) that may get the job."""

    def __init__(self) -> None:
        self.users = {"alice-token": "alice", "bob-token": "bob"}
        self.grants = {("alice", "team-a", "job1")}
        self.token_reviews: list[str] = []
        self.access_reviews: list[dict[str, Any]] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def token_review(self, token: str) -> dict[str, Any]:
        self.token_reviews.append(token)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise OSError("connection refused")
        user = self.users.get(token)
        if user is None:
            return {"authenticated": False, "error": "invalid bearer token"}
        return {"authenticated": True, "user": {"username": user, "groups": ["system:authenticated"], "uid": "u1"}}

    async def subject_access_review(self, spec: dict[str, Any]) -> dict[str, Any]:
        flat = {k: v for k, v in spec.items() if k != "resourceAttributes"} | spec["resourceAttributes"]
        self.access_reviews.append(flat)
        return {"allowed": (flat["user"], flat["namespace"], flat["name"]) in self.grants}


async def lookup(ns: str, name: str) -> dict[str, Any] | None:
    return {"namespace": ns, "name": name, "attempts": []} if name != "missing" else None


@pytest.fixture
async def setup() -> AsyncIterator[tuple[TestClient[Any, Any], FakeReviews, Clock, ReviewAuthorizer]]:
    reviews, clock = FakeReviews(), Clock()
    authorizer = ReviewAuthorizer(reviews, ttl=10.0, max_entries=16, rate=1.0, burst=3, clock=clock)
    app = build_app(
        CollectorRegistry(), live=lambda: (True, ""), ready=lambda: (True, ""), history=lookup, authorize=authorizer
    )
    async with TestClient(TestServer(app)) as client:
        yield client, reviews, clock, authorizer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_is_401_with_a_bearer_challenge_and_no_review(setup: Any) -> None:
    client, reviews, _, _ = setup
    resp = await client.get(HISTORY.format(ns="team-a", name="job1"))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "bearer token is required" in (await resp.json())["error"]
    assert reviews.token_reviews == []


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer   ", "alice-token"])
async def test_a_header_without_a_bearer_token_is_401(setup: Any, header: str) -> None:
    client, _, _, _ = setup
    resp = await client.get(HISTORY.format(ns="team-a", name="job1"), headers={"Authorization": header})
    assert resp.status == 401


async def test_an_invalid_token_is_401(setup: Any) -> None:
    client, reviews, _, _ = setup
    resp = await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("forged"))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "not valid" in (await resp.json())["error"]
    assert reviews.access_reviews == []  # no SubjectAccessReview for an unknown caller


async def test_a_valid_token_without_the_right_is_403_naming_user_and_object(setup: Any) -> None:
    client, reviews, _, _ = setup
    resp = await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("bob-token"))
    assert resp.status == 403
    assert (await resp.json())["error"] == "bob may not get processingjobs.procjob.dev team-a/job1"
    (spec,) = reviews.access_reviews
    assert spec == {
        "user": "bob",
        "groups": ["system:authenticated"],
        "uid": "u1",
        "extra": {},
        "namespace": "team-a",
        "verb": "get",
        "group": "procjob.dev",
        "resource": "processingjobs",
        "name": "job1",
    }


async def test_a_403_does_not_tell_whether_the_job_exists(setup: Any) -> None:
    client, _, _, _ = setup
    resp = await client.get(HISTORY.format(ns="team-a", name="missing"), headers=bearer("bob-token"))
    assert resp.status == 403


async def test_the_right_user_gets_the_document_and_404_for_an_unknown_job(setup: Any) -> None:
    client, reviews, _, _ = setup
    reviews.grants.add(("alice", "team-a", "missing"))
    resp = await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))
    assert resp.status == 200
    assert (await resp.json())["name"] == "job1"
    assert resp.headers["Cache-Control"] == "no-store"
    resp = await client.get(HISTORY.format(ns="team-a", name="missing"), headers=bearer("alice-token"))
    assert resp.status == 404


async def test_the_proxy_header_carries_the_token_when_authorization_is_absent(setup: Any) -> None:
    client, _, _, _ = setup
    headers = {PROXY_TOKEN_HEADER: "Bearer alice-token"}
    resp = await client.get(HISTORY.format(ns="team-a", name="job1"), headers=headers)
    assert resp.status == 200


async def test_probes_and_metrics_stay_open(setup: Any) -> None:
    client, reviews, _, _ = setup
    for path in ("/metrics", "/healthz", "/readyz"):
        assert (await client.get(path)).status == 200, path
    assert reviews.token_reviews == []


async def test_reviews_are_cached_for_the_ttl_positive_and_negative(setup: Any) -> None:
    client, reviews, clock, _ = setup
    for _ in range(3):
        assert (await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))).status == 200
        assert (await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("bob-token"))).status == 403
        clock.now += 1.0  # stays under the rate limit (1/s, burst 3)
    assert len(reviews.token_reviews) == 2
    assert len(reviews.access_reviews) == 2
    clock.now += 10.0
    assert (await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))).status == 200
    assert len(reviews.token_reviews) == 3
    assert len(reviews.access_reviews) == 3


async def test_a_revoked_right_is_noticed_after_the_ttl(setup: Any) -> None:
    client, reviews, clock, _ = setup
    assert (await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))).status == 200
    reviews.grants.clear()
    clock.now += 10.0
    assert (await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))).status == 403


async def test_a_token_polling_too_fast_gets_429_with_retry_after(setup: Any) -> None:
    client, _, clock, _ = setup
    statuses = [
        (await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))).status
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    resp = await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))
    assert resp.headers["Retry-After"] == "1"
    # another token is not slowed down by alice's polling
    assert (await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("bob-token"))).status == 403
    clock.now += 1.0
    assert (await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))).status == 200


async def test_a_failed_review_is_503_and_not_cached(setup: Any) -> None:
    client, reviews, _, _ = setup
    reviews.fail = True
    resp = await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))
    assert resp.status == 503
    reviews.fail = False
    assert (await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))).status == 200


async def test_without_an_authorizer_the_history_serves_nobody() -> None:
    app = build_app(CollectorRegistry(), live=lambda: (True, ""), ready=lambda: (True, ""), history=lookup)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get(HISTORY.format(ns="team-a", name="job1"), headers=bearer("alice-token"))
        assert resp.status == 503
        assert (await client.get("/healthz")).status == 200


async def test_concurrent_askers_share_one_review() -> None:
    reviews = FakeReviews()
    reviews.gate = asyncio.Event()
    authorizer = ReviewAuthorizer(reviews, burst=100)
    asks = [asyncio.ensure_future(authorizer("alice-token", "team-a", "job1")) for _ in range(10)]
    await asyncio.sleep(0.01)
    reviews.gate.set()
    verdicts = await asyncio.gather(*asks)
    assert {v.status for v in verdicts} == {200}
    assert len(reviews.token_reviews) == 1
    assert len(reviews.access_reviews) == 1
    assert authorizer.calls == 2


async def test_a_caller_that_leaves_does_not_cancel_the_shared_review() -> None:
    reviews = FakeReviews()
    reviews.gate = asyncio.Event()
    authorizer = ReviewAuthorizer(reviews)
    first = asyncio.ensure_future(authorizer("alice-token", "team-a", "job1"))
    second = asyncio.ensure_future(authorizer("alice-token", "team-a", "job1"))
    await asyncio.sleep(0.01)
    first.cancel()
    reviews.gate.set()
    assert (await second) == Verdict(200, "allowed", user="alice")


def test_the_caches_hold_a_hash_of_the_token_never_the_token() -> None:
    reviews = FakeReviews()
    authorizer = ReviewAuthorizer(reviews)
    assert asyncio.run(authorizer("alice-token", "team-a", "job1")).allowed
    assert authorizer.tokens.get(token_key("alice-token")) is not None
    assert "alice-token" not in repr(authorizer.tokens._items)
    assert "alice-token" not in repr(authorizer.limiter._buckets)


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(10.0, 2, clock)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)
    clock.now += 10.0
    assert cache.get("a") is None


def test_the_rate_limiter_refills_and_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=2, max_keys=2, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.5]
    clock.now += 0.5
    assert limiter.take("k") == 0.0
    limiter.take("x")
    limiter.take("y")
    assert len(limiter._buckets) == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda c: TTLCache(-1.0, 1, c), "ttl >= 0"),
        (lambda c: TTLCache(1.0, 0, c), "max_entries >= 1"),
        (lambda c: RateLimiter(0.0, 1, 1, c), "rate > 0"),
        (lambda c: RateLimiter(1.0, 0, 1, c), "burst >= 1"),
    ],
)
def test_bad_limits_are_refused_by_name(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(Clock())
