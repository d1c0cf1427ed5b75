"""Who may read a job's audit history (and archived logs) over HTTP: TokenReview, SubjectAccessReview,
a short cache.

The history endpoint serves spec snapshots, outputs and pod names, so it answers only a caller
whom the API server itself would let `get` that ProcessingJob: the bearer token is checked with a
TokenReview (authentication.k8s.io/v1), and the user it names with a SubjectAccessReview
(authorization.k8s.io/v1: verb `get`, group procjob.dev, resource processingjobs, the job's
namespace and name); its archived pod logs also need `get` on `pods/log` in that namespace, as
`kubectl logs` would (`LOGS_ACCESS`). This is kube-rbac-proxy's scheme: the cluster's RBAC (and
any authorizer webhook) decides, and a change of RBAC takes effect within `ttl` seconds.

Costs are bounded, so that a poller cannot turn every request into two API calls:
- both reviews are cached for `ttl` seconds (10 s by default), positive and negative alike, in
  LRU maps of at most `max_entries` entries keyed by the SHA-256 of the token (never the token) and
  by the user and the object;
- each token gets `rate` requests per second, bursts of `burst` (429 with Retry-After beyond);
- at most `max_inflight` reviews run at once, and concurrent identical reviews share one call.
A review that fails (API server unreachable, 5xx, 429) is not cached and answers 503.

Outcomes (`Verdict.status`): 200 allowed; 401 no token, or one the API server does not accept;
403 authenticated but not allowed; 429 too many requests with this token; 503 cannot tell now.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from procjob.adapters.kube import ApiError

log = logging.getLogger("procjob.authn")

GROUP = "procjob.dev"
RESOURCE = "processingjobs"
VERB = "get"

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class Reviews(Protocol):
    """The two API calls (procjob.adapters.kube.KubeClient has them)."""

    async def token_review(self, token: str) -> dict[str, Any]: ...

    async def subject_access_review(self, spec: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Identity:
    """A user as a TokenReview described them; the subject of the SubjectAccessReview."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_review(cls, user: Mapping[str, Any]) -> Identity:
        extra = user.get("extra") or {}
        return cls(
            user=str(user.get("username") or ""),
            groups=tuple(str(g) for g in user.get("groups") or ()),
            uid=str(user.get("uid") or ""),
            extra=tuple(sorted((str(k), tuple(str(v) for v in vs or ())) for k, vs in extra.items())),
        )


@dataclass(frozen=True)
class Access:
    """One right a caller must have in the job's namespace: `verb` on a resource (or subresource),
    of the job's own name when `named`, else of every object (a namespace-wide right)."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    named: bool = True

    def attributes(self, namespace: str, name: str) -> dict[str, str]:
        found = {"namespace": namespace, "verb": self.verb, "group": self.group, "resource": self.resource}
        if self.subresource:
            found["subresource"] = self.subresource
        if self.named:
            found["name"] = name
        return found

    def describe(self, namespace: str, name: str) -> str:
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        what += f"/{self.subresource}" if self.subresource else ""
        return (
            f"{self.verb} {what} {namespace}/{name}" if self.named else f"{self.verb} {what} in namespace {namespace}"
        )


# The history: `get` on the job. Its archived pod logs: that, and `get pods/log` in the namespace, the
# right `kubectl logs` needs (the archive must not show a tenant's logs to anyone the cluster would not).
HISTORY_ACCESS = (Access(VERB, GROUP, RESOURCE),)
LOGS_ACCESS = (Access(VERB, GROUP, RESOURCE), Access("get", "", "pods", "log", named=False))


@dataclass(frozen=True)
class Verdict:
    """The answer for one request: an HTTP status, a message for the caller, and who asked."""

    status: int
    message: str
    user: str = ""
    retry_after: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.status == 200


Authorize = Callable[[str | None, str, str], Awaitable[Verdict]]
"""`authorize(token or None, namespace, name)`: what the history (or logs) endpoint asks before answering."""


class TTLCache(Generic[K, V]):
    """A bounded map whose entries expire `ttl` seconds after they were stored (LRU eviction)."""

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        if ttl < 0 or max_entries < 1:
            raise ValueError("TTLCache needs ttl >= 0 and max_entries >= 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        expires, value = found
        if self.clock() >= expires:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = (self.clock() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)


class RateLimiter:
    """Token buckets per key (`rate` per second, `burst` at most), for at most `max_keys` keys.

    A key evicted for room starts again with a full bucket: the limit protects against one
    client polling hard, not against many keys (the review cache and in-flight bound do that)."""

    def __init__(self, rate: float, burst: int, max_keys: int, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("RateLimiter needs rate > 0, burst >= 1 and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0.0 when the request may go ahead, else the seconds until it would."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def token_key(token: str) -> str:
    """What the caches and the rate limiter remember of a token: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


class ReviewAuthorizer:
    """`authorize(token, namespace, name) -> Verdict` with TokenReview + SubjectAccessReview."""

    def __init__(
        self,
        reviews: Reviews,
        *,
        ttl: float = 10.0,
        max_entries: int = 4096,
        rate: float = 5.0,
        burst: int = 20,
        max_inflight: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reviews = reviews
        self.tokens: TTLCache[str, Identity | str] = TTLCache(ttl, max_entries, clock)  # str: why not
        self.access: TTLCache[tuple[Identity, str, str, Access], tuple[bool, str]] = TTLCache(ttl, max_entries, clock)
        self.limiter = RateLimiter(rate, burst, max_entries, clock)
        self._inflight = asyncio.Semaphore(max_inflight)
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self.calls = 0  # reviews actually posted, for tests and benchmarks

    async def logs(self, token: str | None, namespace: str, name: str) -> Verdict:
        """The archived pod logs of a job: `get` on the job and `get pods/log` in its namespace."""
        return await self(token, namespace, name, needs=LOGS_ACCESS)

    async def __call__(
        self, token: str | None, namespace: str, name: str, *, needs: tuple[Access, ...] = HISTORY_ACCESS
    ) -> Verdict:
        if not token:
            return Verdict(401, "a bearer token is required (Authorization: Bearer <token>)")
        key = token_key(token)
        wait = self.limiter.take(key)
        if wait > 0:
            return Verdict(429, "too many requests with this token; slow down", retry_after=wait)
        try:
            identity = await self._identity(key, token)
            if isinstance(identity, str):
                return Verdict(401, identity)
            for access in needs:
                allowed, reason = await self._access(identity, namespace, name, access)
                if not allowed:
                    why = f" ({reason})" if reason else ""
                    message = f"{identity.user} may not {access.describe(namespace, name)}{why}"
                    return Verdict(403, message, user=identity.user)
        except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("history: a review failed: %s", exc)
            return Verdict(503, "cannot verify the request with the API server now; try again")
        return Verdict(200, "allowed", user=identity.user)

    async def _identity(self, key: str, token: str) -> Identity | str:
        cached = self.tokens.get(key)
        if cached is not None:
            return cached

        async def review() -> Identity | str:
            status = await self.reviews.token_review(token)
            user = status.get("user") or {}
            if not status.get("authenticated") or not user.get("username"):
                return "the bearer token is not valid for this cluster (expired, revoked or unknown)"
            return Identity.from_review(user)

        found: Identity | str = await self._shared(("token", key), review)
        self.tokens.put(key, found)
        return found

    async def _access(self, identity: Identity, namespace: str, name: str, access: Access) -> tuple[bool, str]:
        cache_key = (identity, namespace, name if access.named else "", access)
        cached = self.access.get(cache_key)
        if cached is not None:
            return cached

        async def review() -> tuple[bool, str]:
            attributes = access.attributes(namespace, name)
            spec = {
                "user": identity.user,
                "groups": list(identity.groups),
                "uid": identity.uid,
                "extra": {k: list(v) for k, v in identity.extra},
                "resourceAttributes": attributes,
            }
            status = await self.reviews.subject_access_review(spec)
            allowed = bool(status.get("allowed")) and not status.get("denied")
            return allowed, str(status.get("reason") or "")[:200]

        found: tuple[bool, str] = await self._shared(("access", cache_key), review)
        self.access.put(cache_key, found)
        return found

    async def _shared(self, key: Any, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call` once for concurrent askers of the same key, at most `max_inflight` at a time.

        Shielded: a client that hangs up does not cancel the review the others wait for."""
        pending = self._pending.get(key)
        if pending is None:

            async def limited() -> T:
                async with self._inflight:
                    self.calls += 1
                    return await call()

            pending = asyncio.ensure_future(limited())
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._forget(key, done))
        result: T = await asyncio.shield(pending)
        return result

    def _forget(self, key: Any, done: asyncio.Future[Any]) -> None:
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: no "exception was never retrieved" when every asker left


def retry_after_header(seconds: float) -> str:
    """Retry-After wants whole seconds."""
    return str(max(1, math.ceil(seconds)))
