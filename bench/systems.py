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
                + [{"name": "PROCJOB_TERMINATION_MESSAGE_PATH", "value": "/dev/termination-log"}],
                "terminationMessagePath": "/dev/termination-log",
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
    load = Load()
    wanted = set(chains)
    handled: set[tuple[str, int]] = set()
    tasks: set[asyncio.Task[None]] = set()
    errors: list[str] = []
    failures: list[str] = []
    last_progress = time.monotonic()

    async def create(chain: str, stage: int) -> None:
        path, body = system.build(namespace, chain, stage)

        def sent() -> None:
            load.requested.setdefault((chain, stage), time.time())

        try:
            await api.create(path, body, on_send=sent)
            load.created += 1
        except ApiError as exc:
            if exc.status != 409:  # 409: a retried create that had already succeeded
                errors.append(str(exc))
        except BenchError as exc:
            errors.append(str(exc))

    def spawn(chain: str, stage: int) -> None:
        task = asyncio.create_task(create(chain, stage))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def sink(now: float, etype: str, obj: dict[str, Any]) -> None:
        nonlocal last_progress
        key = _key(obj, system, stages)
        if key is None or key[0] not in wanted or key in handled:
            return
        if system.failed(obj):
            handled.add(key)
            failures.append(f"{key[0]} stage {key[1]}")
            return
        if not system.done(obj):
            return
        handled.add(key)
        last_progress = time.monotonic()
        chain, stage = key
        if stage + 1 < stages:
            spawn(chain, stage + 1)
        else:
            load.done[chain] = now

    ready = asyncio.Event()
    watcher = asyncio.create_task(api.watch(system.watch.format(ns=namespace), sink, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        load.first_request = time.time()
        started = time.monotonic()
        interval = 1.0 / rate if rate else 0.0
        for i, chain in enumerate(chains):
            if interval:
                delay = started + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            spawn(chain, 0)
        last_report = time.monotonic()
        while len(load.done) < len(chains):
            await asyncio.sleep(0.2)
            now = time.monotonic()
            if watcher.done():
                watcher.result()
                raise BenchError(f"{system.name}: the harness's watch ended")
            if errors:
                raise BenchError(f"{system.name}: {len(errors)} creates failed, e.g. {errors[0]}")
            if failures:
                raise BenchError(f"{system.name}: {len(failures)} stages failed, e.g. {failures[0]}")
            if now - last_report >= 5:
                last_report = now
                progress(f"{system.name}: {len(load.done)}/{len(chains)} chains done, {len(handled)} stages done")
            if now - last_progress > stall_timeout:
                raise BenchError(
                    f"{system.name}: no progress for {stall_timeout:.0f}s "
                    f"({len(load.done)}/{len(chains)} chains done, {len(handled)} stages done)"
                )
            if now > deadline:
                raise BenchError(f"{system.name}: deadline passed with {len(load.done)}/{len(chains)} chains done")
        load.last_done = max(load.done.values())
        return load
    except TimeoutError:
        raise BenchError(f"{system.name}: the harness's watch did not start within 30s") from None
    finally:
        watcher.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(watcher, *tasks, return_exceptions=True)
