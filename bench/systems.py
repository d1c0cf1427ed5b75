"""The three systems as load: what the harness creates, how it chains stages, when a chain is done.

A run is N chains of S stages. Every pod carries the labels bench.procjob.dev/chain and
bench.procjob.dev/stage so that the observer can tell which stage of which chain it is.

- B0 (ceiling): pre-bound pods (spec.nodeName = a kwok Node: no scheduler, no controller). The
  harness plays the controller: when pod k of a chain is Succeeded it creates pod k+1.
- B1 (reference): one batch/v1 Job per stage (ttlSecondsAfterFinished: 0), run by the
  controller-manager's Job controller; the harness creates Job k+1 when Job k is Complete.
- procjob: one ProcessingJob per chain with S stages (podGC: OnCompletion); the operator chains.

The pods of all three look alike (procjob's pod shape: same env names, security context, volume).
`drive()` creates the first object of every chain (all at once, or at a fixed arrival rate) and
follows a watch of its own until every chain is done, failing on a stall or a deadline.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.api import BATCH, JOBS, Api, ApiError, BenchError
from bench.observer import LABEL_CHAIN, LABEL_STAGE, state_of
from procjob.core.podspec import container_security_context
from procjob.models.contract import ENV_TERMINATION_MESSAGE_PATH, TERMINATION_MESSAGE_PATH

IMAGE = "registry.example/bench-worker:1"
RUN_AS = 65532


def labels(chain: str, stage: int) -> dict[str, str]:
    return {LABEL_CHAIN: chain, LABEL_STAGE: str(stage)}


def worker_pod_spec(node: str | None = None) -> dict[str, Any]:
    """A pod spec shaped like the operator's (procjob.core.podspec), for B0 and B1."""
    env = ["PROCJOB_JOB_NAME", "PROCJOB_JOB_NAMESPACE", "PROCJOB_JOB_UID", "PROCJOB_STAGE", "PROCJOB_ATTEMPT"]
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "main",
                "image": IMAGE,
                "env": [{"name": name, "value": "bench"} for name in env]
                + [{"name": ENV_TERMINATION_MESSAGE_PATH, "value": TERMINATION_MESSAGE_PATH}],
                "terminationMessagePath": TERMINATION_MESSAGE_PATH,
                "terminationMessagePolicy": "File",
                "securityContext": container_security_context(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    if node is not None:
        spec["nodeName"] = node
    return spec


@dataclass(frozen=True)
class System:
    """How the harness drives one system."""

    name: str
    kind: str  # the observer's record kind of the object the harness creates: pod, job, pj
    watch: str  # the collection the harness watches (format with ns=)
    chained: bool  # True: the harness creates stage k+1 when stage k is done
    build: Callable[[str, str, int], tuple[str, dict[str, Any]]]  # (ns, chain, stage) -> (POST path, body)
    done: Callable[[dict[str, Any]], bool]
    failed: Callable[[dict[str, Any]], bool]


def b0(stages: int, nodes: list[str]) -> System:
    def build(ns: str, chain: str, stage: int) -> tuple[str, dict[str, Any]]:
        node = nodes[zlib.crc32(chain.encode()) % len(nodes)]
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{chain}-s{stage}", "labels": labels(chain, stage)},
            "spec": worker_pod_spec(node),
        }
        return f"/api/v1/namespaces/{ns}/pods", body

    return System(
        "b0",
        "pod",
        "/api/v1/namespaces/{ns}/pods",
        True,
        build,
        lambda o: state_of("pod", o) == "Succeeded",
        lambda o: state_of("pod", o) == "Failed",
    )


def b1(stages: int) -> System:
    def build(ns: str, chain: str, stage: int) -> tuple[str, dict[str, Any]]:
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f"{chain}-s{stage}", "labels": labels(chain, stage)},
            "spec": {
                "backoffLimit": 0,
                "completions": 1,
                "parallelism": 1,
                "ttlSecondsAfterFinished": 0,
                "template": {"metadata": {"labels": labels(chain, stage)}, "spec": worker_pod_spec()},
            },
        }
        return f"{BATCH}/namespaces/{ns}/jobs", body

    return System(
        "b1",
        "job",
        BATCH + "/namespaces/{ns}/jobs",
        True,
        build,
        lambda o: state_of("job", o) == "Complete",
        lambda o: state_of("job", o) == "Failed",
    )


def procjob(stages: int) -> System:
    def build(ns: str, chain: str, stage: int) -> tuple[str, dict[str, Any]]:
        body = {
            "apiVersion": "procjob.dev/v1alpha1",
            "kind": "ProcessingJob",
            "metadata": {"name": chain, "labels": {LABEL_CHAIN: chain, LABEL_STAGE: str(stages - 1)}},
            "spec": {
                "podGC": "OnCompletion",
                "stages": [
                    {"name": f"s{k}", "image": IMAGE, "podMetadata": {"labels": labels(chain, k)}}
                    for k in range(stages)
                ],
            },
        }
        return f"{JOBS}/namespaces/{ns}/processingjobs", body

    return System(
        "procjob",
        "pj",
        JOBS + "/namespaces/{ns}/processingjobs",
        False,
        build,
        lambda o: state_of("pj", o).startswith("True:"),
        lambda o: state_of("pj", o).startswith("False:"),
    )


@dataclass
class Load:
    """What the harness did: when it sent each create request, when it saw each chain done."""

    requested: dict[tuple[str, int], float] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)
    first_request: float = 0.0
    last_done: float = 0.0
    created: int = 0


def _key(obj: dict[str, Any], system: System, stages: int) -> tuple[str, int] | None:
    lab = (obj.get("metadata") or {}).get("labels") or {}
    chain, stage = lab.get(LABEL_CHAIN), lab.get(LABEL_STAGE)
    if chain is None or stage is None or not stage.isdigit():
        return None
    return chain, int(stage) if system.chained else stages - 1


@dataclass
class Driver:
    """One `drive()`: the chains' progress as the harness's own watch reports it, the creates in flight.

    The watch calls `sink`; a done stage spawns the chain's next create (chained systems) or marks the
    chain done. Create errors and failed stages are collected here and raised by `check`.
    """

    api: Api
    system: System
    namespace: str
    chains: list[str]
    stages: int
    load: Load = field(default_factory=Load)
    handled: set[tuple[str, int]] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    last_progress: float = field(default_factory=time.monotonic)
    wanted: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.wanted = set(self.chains)

    async def create(self, chain: str, stage: int) -> None:
        path, body = self.system.build(self.namespace, chain, stage)

        def sent() -> None:
            self.load.requested.setdefault((chain, stage), time.time())

        try:
            await self.api.create(path, body, on_send=sent)
            self.load.created += 1
        except ApiError as exc:
            if exc.status != 409:  # 409: a retried create that had already succeeded
                self.errors.append(str(exc))
        except BenchError as exc:
            self.errors.append(str(exc))

    def spawn(self, chain: str, stage: int) -> None:
        task = asyncio.create_task(self.create(chain, stage))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def sink(self, now: float, etype: str, obj: dict[str, Any]) -> None:
        key = _key(obj, self.system, self.stages)
        if key is None or key[0] not in self.wanted or key in self.handled:
            return
        if self.system.failed(obj):
            self.handled.add(key)
            self.failures.append(f"{key[0]} stage {key[1]}")
            return
        if not self.system.done(obj):
            return
        self.handled.add(key)
        self.last_progress = time.monotonic()
        chain, stage = key
        if stage + 1 < self.stages:
            self.spawn(chain, stage + 1)
        else:
            self.load.done[chain] = now

    async def start_chains(self, rate: float | None) -> None:
        """Create every chain's first object: all at once, or `rate` chains per second."""
        started = time.monotonic()
        interval = 1.0 / rate if rate else 0.0
        for i, chain in enumerate(self.chains):
            if interval:
                delay = started + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.spawn(chain, 0)

    def counts(self) -> str:
        return f"{len(self.load.done)}/{len(self.chains)} chains done, {len(self.handled)} stages done"

    def check_failures(self, watcher: asyncio.Task[None]) -> None:
        """Raise when the run cannot finish: the harness's watch gone, failed creates or failed stages."""
        name = self.system.name
        if watcher.done():
            watcher.result()
            raise BenchError(f"{name}: the harness's watch ended")
        if self.errors:
            raise BenchError(f"{name}: {len(self.errors)} creates failed, e.g. {self.errors[0]}")
        if self.failures:
            raise BenchError(f"{name}: {len(self.failures)} stages failed, e.g. {self.failures[0]}")

    def check_time(self, now: float, stall_timeout: float, deadline: float) -> None:
        """Raise when no stage finished for `stall_timeout` seconds or the deadline has passed."""
        name = self.system.name
        if now - self.last_progress > stall_timeout:
            raise BenchError(f"{name}: no progress for {stall_timeout:.0f}s ({self.counts()})")
        if now > deadline:
            raise BenchError(f"{name}: deadline passed with {len(self.load.done)}/{len(self.chains)} chains done")

    async def wait_done(
        self, watcher: asyncio.Task[None], stall_timeout: float, deadline: float, progress: Callable[[str], None]
    ) -> None:
        """Poll every 0.2 s until every chain is done, reporting progress every 5 s."""
        last_report = time.monotonic()
        while len(self.load.done) < len(self.chains):
            await asyncio.sleep(0.2)
            now = time.monotonic()
            self.check_failures(watcher)
            if now - last_report >= 5:
                last_report = now
                progress(f"{self.system.name}: {self.counts()}")
            self.check_time(now, stall_timeout, deadline)

    async def cancel(self, watcher: asyncio.Task[None]) -> None:
        watcher.cancel()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(watcher, *self.tasks, return_exceptions=True)


async def drive(
    api: Api,
    system: System,
    namespace: str,
    chains: list[str],
    stages: int,
    *,
    rate: float | None,
    stall_timeout: float,
    deadline: float,
    progress: Callable[[str], None],
) -> Load:
    """Run the chains to completion; `rate` (chains/s) paces the first creates, None = all at once."""
    driver = Driver(api, system, namespace, chains, stages)
    ready = asyncio.Event()
    watcher = asyncio.create_task(api.watch(system.watch.format(ns=namespace), driver.sink, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        driver.load.first_request = time.time()
        await driver.start_chains(rate)
        await driver.wait_done(watcher, stall_timeout, deadline, progress)
        driver.load.last_done = max(driver.load.done.values())
        return driver.load
    except TimeoutError:
        raise BenchError(f"{system.name}: the harness's watch did not start within 30s") from None
    finally:
        await driver.cancel(watcher)
