"""What the driver's parts share: its API client, the replicas, the proxies' control, PostgreSQL,
the seeded random source, its own view of the world (to act on jobs and pods), and the logs of
what it did (actions, disruptions, held pods, faults) that the checker reads afterwards.

The driver's view is separate from the observer's on purpose: the observer is a different process
the driver never asks; the driver's watches only tell it when to act.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from bench.api import Api, ApiError, TransportError
from tests.support.postgres import PostgresCluster

from chaos.policy import Disruption
from chaos.pressure import Sampler
from chaos.replicas import Replica, Replicas
from chaos.watch import Watch

JOBS = "/apis/procjob.dev/v1alpha1"
LEASE = "procjob-operator"


@dataclass
class World:
    """The latest ProcessingJobs and pods per (namespace, name), from the driver's own watches."""

    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def sink(self, store: dict[tuple[str, str], dict[str, Any]]) -> Callable[[float, str, dict[str, Any]], None]:
        def record(now: float, etype: str, obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            where = (str(meta.get("namespace")), str(meta.get("name")))
            if etype == "DELETED":
                current = store.get(where)
                if current is not None and current["metadata"].get("uid") == meta.get("uid"):
                    del store[where]
            else:
                store[where] = obj

        return record

    def watches(self, session: aiohttp.ClientSession, namespaces: list[str]) -> list[Watch]:
        def nothing(path: str, lost: float, back: float) -> None:
            return None

        found = []
        for ns in namespaces:
            found.append(Watch(session, f"{JOBS}/namespaces/{ns}/processingjobs", self.sink(self.jobs), nothing))
            found.append(Watch(session, f"/api/v1/namespaces/{ns}/pods", self.sink(self.pods), nothing))
        return found

    def pods_of(self, job_uid: str) -> list[dict[str, Any]]:
        return [
            p for p in self.pods.values() if (p["metadata"].get("labels") or {}).get("procjob.dev/job-uid") == job_uid
        ]


@dataclass
class Context:
    api: Api
    replicas: Replicas
    control: str  # the proxies' control URL
    pg: PostgresCluster
    rng: random.Random
    namespaces: list[str]
    lease_ns: str
    timings: tuple[float, float, float]
    log: Callable[[str], None]
    world: World = field(default_factory=World)
    t0: float = 0.0
    disruptions: dict[str, Disruption] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    etcd: str = ""  # etcd's client URL (its gRPC gateway)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    pressure: Sampler = field(default_factory=Sampler)  # CPU stall samples (takeover allowances)
    extras: dict[str, Any] = field(default_factory=dict)  # run_id, dsn, workdir, the helper processes

    def action(self, what: str, **detail: Any) -> None:
        self.actions.append({"t": round(time.time(), 3), "what": what, **detail})

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def holder(self) -> str | None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.lease_ns}/leases/{LEASE}"
        with contextlib.suppress(ApiError, TransportError):
            lease = await self.api.request("GET", path, ok404=True, seconds=5)
            return None if lease is None else (lease.get("spec") or {}).get("holderIdentity")
        return None

    async def leader(self, within: float = 60.0) -> Replica:
        """The replica holding the Lease (waiting for one to, if needed)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = self.replicas.by_holder(await self.holder())
            if found is not None and found.pid is not None:
                return found
            await asyncio.sleep(0.2)
        raise RuntimeError(f"no operator replica led within {within:.0f}s")

    async def control_post(self, path: str) -> Any:
        async with aiohttp.ClientSession() as session, session.post(self.control + path) as resp:
            return await resp.json()

    async def etcd_post(self, path: str, body: dict[str, Any]) -> Any:
        async with aiohttp.ClientSession() as session, session.post(self.etcd + path, json=body) as resp:
            return await resp.json()
