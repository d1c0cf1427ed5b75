"""A small asyncio Kubernetes client for the benchmarks (aiohttp, the rig's admin kubeconfig).

Written apart from the operator's own client on purpose, like tests/support/kube.py (whose TLS
loader it reuses). Every request has a timeout; the API server must be on 127.0.0.1 (the rig), so
no benchmark traffic ever leaves the machine. `watch()` lists, then watches from the list's
resourceVersion, relisting on 410 Gone, and stamps each chunk with `time.time()` on arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from tests.support.kube import _tls

JOBS = "/apis/procjob.dev/v1alpha1"
BATCH = "/apis/batch/v1"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# (time received, event type, object) -> None
EventSink = Callable[[float, str, dict[str, Any]], None]


class BenchError(RuntimeError):
    """A benchmark step failed or timed out; the message says which and why."""


class TransportError(BenchError):
    """No answer: the connection failed or the request timed out."""


# Answers worth asking again: the API server throttled, overloaded, or not ready yet (e.g. a CRD's
# storage just after the CRD is applied).
RETRYABLE_STATUSES = frozenset({429, 500, 503, 504})


class PollTimeout(BenchError):
    """`poll` gave up: what it waited for did not come."""


class ApiError(BenchError):
    def __init__(self, status: int, method: str, path: str, text: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {text[:300]}")
        self.status = status


class Api:
    """Async client; `concurrency` bounds the requests in flight (and the connection pool)."""

    def __init__(self, kubeconfig: Path, *, concurrency: int = 64, timeout: float = 30.0) -> None:
        self.server, self.ssl = _tls(kubeconfig)
        host = urlsplit(self.server).hostname or ""
        if host not in LOOPBACK:
            raise BenchError(f"refusing to benchmark a non-local API server ({host}): use the rig")
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self.limit = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._concurrency = concurrency

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl, limit=self._concurrency + 16)
            self._session = aiohttp.ClientSession(base_url=self.server, connector=connector, timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        ok404: bool = False,
        on_send: Callable[[], None] | None = None,
        seconds: float | None = None,
    ) -> Any:
        """One request; `seconds` overrides the client's timeout (e.g. for a large list)."""
        headers = {"Content-Type": content_type} if body is not None else None
        limit = aiohttp.ClientTimeout(total=seconds, sock_connect=10) if seconds else None
        async with self.limit:
            if on_send is not None:
                on_send()
            try:
                async with self.session.request(
                    method, path, json=body, params=params, headers=headers, timeout=limit or self.timeout
                ) as resp:
                    text = await resp.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransportError(f"{method} {path}: {type(exc).__name__} {exc}".strip()) from None
        if ok404 and resp.status == 404:
            return None
        if resp.status >= 300:
            raise ApiError(resp.status, method, path, text)
        return json.loads(text) if text else None

    async def create(self, path: str, body: dict[str, Any], on_send: Callable[[], None] | None = None) -> Any:
        """POST with a few retries on 429/5xx and connection errors (an overloaded 2-core rig)."""
        for attempt in range(6):
            try:
                return await self.request("POST", path, body=body, on_send=on_send)
            except ApiError as exc:
                if exc.status not in RETRYABLE_STATUSES or attempt == 5:
                    raise
            except TransportError:
                if attempt == 5:
                    raise
            await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    async def text(self, path: str) -> str:
        try:
            async with self.limit, self.session.get(path) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"GET {path}: {type(exc).__name__} {exc}".strip()) from None
        if resp.status != 200:
            raise ApiError(resp.status, "GET", path, text)
        return text

    # ------------------------------------------------------------------------------ namespaces
    async def create_namespace(self, name: str, *, within: float = 60.0) -> None:
        """Create a namespace and wait until its `default` ServiceAccount exists (pods need it)."""
        await self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        await poll(
            f"the default ServiceAccount of namespace {name}",
            lambda: self.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default", ok404=True),
            within,
        )

    async def empty_namespace(self, name: str, *, within: float) -> float:
        """Delete a namespace's objects and wait until its pods (and ProcessingJobs) are gone; returns seconds.

        Objects are deleted one by one, many at a time (a deletecollection of a thousand pods runs
        one worker in the API server and outlasts any sane client timeout). Pods go with grace
        period 0 (kwok removes a pod without finalizers at once): the namespace controller, left to
        do it alone, would wait out the pods' 30 s grace-period estimate. ProcessingJobs carry the
        operator's finalizer, so the operator must still run meanwhile.
        """
        started = time.monotonic()
        collections = {
            f"{JOBS}/namespaces/{name}/processingjobs": 30,
            f"{BATCH}/namespaces/{name}/jobs": 30,
            f"/api/v1/namespaces/{name}/pods": 0,
        }

        async def delete(path: str, grace: int) -> None:
            body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
            if grace == 0:
                body["gracePeriodSeconds"] = 0
            with contextlib.suppress(ApiError, TransportError):  # gone already, or retried below
                await self.request("DELETE", path, body=body, ok404=True)

        async def sweep() -> int:
            left = 0
            for path, grace in collections.items():
                listed = await self.request("GET", path, ok404=True, seconds=120)
                items = [] if listed is None else listed.get("items") or []
                live = [i for i in items if not (i.get("metadata") or {}).get("deletionTimestamp")]
                await asyncio.gather(*(delete(f"{path}/{i['metadata']['name']}", grace) for i in live))
                left += len(items)
            return left

        while (left := await sweep()) > 0:
            if time.monotonic() - started > within:
                raise BenchError(f"namespace {name}: {left} objects still there after {within:.0f}s")
            await asyncio.sleep(0.5)
        return time.monotonic() - started

    async def delete_namespaces(self, names: list[str], *, within: float) -> float:
        """Delete namespaces and wait until they are gone (the namespace controller waits 5 s first)."""
        started = time.monotonic()
        for name in names:
            await self.request("DELETE", f"/api/v1/namespaces/{name}", ok404=True)

        async def gone() -> bool:
            for name in names:
                if await self.request("GET", f"/api/v1/namespaces/{name}", ok404=True) is not None:
                    return False
            return True

        await poll(f"namespaces {', '.join(names)} to be deleted", gone, within, interval=0.5)
        return time.monotonic() - started

    # ---------------------------------------------------------------------------------- watch
    async def watch(
        self,
        path: str,
        sink: EventSink,
        *,
        params: dict[str, str] | None = None,
        ready: asyncio.Event | None = None,
    ) -> None:
        """List + watch `path` forever (cancel to stop); `sink` gets every object, stamped on arrival."""
        base = dict(params or {})
        rv = await self._list_into(path, base, sink)
        watch_timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
        while True:
            query = {**base, "watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "60"}
            try:
                async with self.session.get(path, params=query, timeout=watch_timeout) as resp:
                    if resp.status == 410:
                        rv = await self._list_into(path, base, sink)
                        continue
                    if resp.status != 200:
                        raise ApiError(resp.status, "WATCH", path, await resp.text())
                    if ready is not None:
                        ready.set()
                    buffer = b""
                    async for chunk in resp.content.iter_any():
                        now = time.time()
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            kind = event.get("type")
                            obj = event.get("object") or {}
                            if kind == "ERROR":
                                if obj.get("code") == 410:
                                    rv = ""
                                    break
                                raise ApiError(int(obj.get("code") or 500), "WATCH", path, str(obj.get("message")))
                            rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                            if kind != "BOOKMARK":
                                sink(now, kind, obj)
                        if not rv:
                            break
                if not rv:
                    rv = await self._list_into(path, base, sink)
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, TimeoutError):
                await asyncio.sleep(0.1)

    async def _list_into(self, path: str, params: dict[str, str], sink: EventSink) -> str:
        listed = await self.request("GET", path, params=params)
        now = time.time()
        for item in listed.get("items") or []:
            sink(now, "ADDED", item)
        rv: str = listed["metadata"]["resourceVersion"]
        return rv


async def poll(what: str, check: Callable[[], Awaitable[Any]], within: float, interval: float = 0.2) -> Any:
    """Await `check()` until it returns something truthy; BenchError naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if last:
                return last
        await asyncio.sleep(interval)
    raise PollTimeout(f"timed out after {within:.0f}s waiting for {what} (last: {str(last)[:200]})")
