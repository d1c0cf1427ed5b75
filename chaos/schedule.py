"""Profiles (quick, full) and the seeded fault schedule.

A profile names its workload size, its queue limits and the faults it injects. The schedule puts
the sequential faults (control-plane and operator faults, one at a time, so each one's effects
can be told apart) in an order and at moments drawn from the seed, spaced by a settling pause,
and scatters the background faults (the 10 Hz writer, pod disruptions, PostgreSQL latency, a
node lost) over the same window. The same seed gives the same plan: same jobs, same faults, same
parameters, same offsets from the workload's start (the system's reactions still vary).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fault:
    name: str  # the injector (chaos.faults.INJECTORS)
    label: str  # what the report calls it
    params: dict[str, Any]
    duration: float  # expected seconds, for spacing the schedule
    background: bool = False


@dataclass(frozen=True)
class Planned:
    at: float  # seconds after the workload's start
    fault: Fault


@dataclass(frozen=True)
class Profile:
    name: str
    jobs: int
    namespaces: int
    queue: tuple[int, int]  # --max-running-jobs, --max-running-jobs-per-namespace
    faults: tuple[Fault, ...]
    flood: int = 0  # jobs created while no operator runs (0: no such phase)
    calm_jobs: int = 12
    timings: tuple[float, float, float] = (4.0, 3.0, 0.5)  # lease, renew deadline, retry
    settle: tuple[float, float] = (8.0, 15.0)  # pause between sequential faults
    node: bool = False  # add a kwok Node the node-lost fault can lose
    drain_timeout: float = 600.0
    budget: str = ""


def _kills(n: int) -> list[Fault]:
    return [Fault("leader-kill", f"SIGKILL leader #{i + 1}", {}, 2) for i in range(n)]


def _failpoints(rng: random.Random) -> list[Fault]:
    return [
        Fault("failpoint", f"SIGKILL at failpoint {point}", {"point": point, "n": rng.randint(1, 4)}, 20)
        for point in ("pod-before-create", "pod-after-create")
    ]


def quick_faults(rng: random.Random) -> tuple[Fault, ...]:
    return (
        *_kills(1),
        *_failpoints(rng),
        Fault("leader-stop", "SIGSTOP leader past its lease, SIGCONT", {"seconds": 10}, 16),
        Fault("component-down", "kube-apiserver killed 30 s", {"component": "kube-apiserver", "seconds": 30}, 36),
        Fault("pg-down", "PostgreSQL down 40 s, leader killed meanwhile", {"seconds": 40, "kill_after": 15}, 41),
        Fault(
            "silent-watch",
            "silent watch 75 s + etcd compaction (410)",
            {"seconds": 75, "deletions": 4, "compact_after": 35},
            78,
        ),
        Fault("pg-restart", "PostgreSQL restarted mid-transaction", {}, 4),
        Fault(
            "delete-recreate",
            "jobs deleted mid-stage (operator up), re-created",
            {"count": 2, "operator": "up", "hold_s": 10},
            20,
        ),
        Fault(
            "delete-recreate",
            "jobs deleted mid-stage (operator down), re-created",
            {"count": 2, "operator": "down", "hold_s": 15},
            30,
        ),
        Fault("writer", "10 Hz writer (labels, annotations, priority, suspend)", {"seconds": 60}, 60, True),
        Fault("pg-latency", "PostgreSQL +500 ms", {"ms": 500, "seconds": 40}, 40, True),
        Fault("disruptions", "pods deleted, force-deleted, evicted", {}, 2, True),
        Fault("disruptions", "pods deleted, force-deleted, evicted", {}, 2, True),
    )


def full_faults(rng: random.Random) -> tuple[Fault, ...]:
    return (
        *_kills(5),
        *_failpoints(rng),
        *_failpoints(rng),
        Fault("leader-stop", "SIGSTOP leader past its lease, SIGCONT", {"seconds": 10}, 16),
        Fault("leader-stop", "SIGSTOP leader past its lease, SIGCONT", {"seconds": 20}, 26),
        Fault("component-down", "kube-apiserver killed 30 s", {"component": "kube-apiserver", "seconds": 30}, 36),
        Fault("component-down", "kube-apiserver killed 120 s", {"component": "kube-apiserver", "seconds": 120}, 130),
        Fault("component-down", "etcd killed 30 s", {"component": "etcd", "seconds": 30}, 40),
        Fault("pg-down", "PostgreSQL down 5 min, leader killed meanwhile", {"seconds": 300, "kill_after": 60}, 300),
        Fault(
            "silent-watch",
            "silent watch 90 s + etcd compaction (410)",
            {"seconds": 90, "deletions": 8, "compact_after": 45},
            95,
        ),
        Fault("pg-restart", "PostgreSQL restarted mid-transaction", {}, 4),
        Fault("pg-restart", "PostgreSQL restarted mid-transaction", {}, 4),
        Fault("pg-latency", "PostgreSQL +500 ms", {"ms": 500, "seconds": 120}, 120),
        Fault(
            "delete-recreate",
            "jobs deleted mid-stage (operator up), re-created",
            {"count": 3, "operator": "up", "hold_s": 10},
            20,
        ),
        Fault(
            "delete-recreate",
            "jobs deleted mid-stage (operator down), re-created",
            {"count": 3, "operator": "down", "hold_s": 15},
            30,
        ),
        Fault("node-lost", "kwok Node NotReady, then deleted", {"node": "chaos-node", "notready_s": 20}, 30, True),
        Fault("writer", "10 Hz writer (labels, annotations, priority, suspend)", {"seconds": 180}, 180, True),
        Fault("writer", "10 Hz writer (labels, annotations, priority, suspend)", {"seconds": 180}, 180, True),
        *[Fault("disruptions", "pods deleted, force-deleted, evicted", {}, 2, True) for _ in range(6)],
    )


def profile(name: str, seed: int) -> Profile:
    rng = random.Random(f"faults/{seed}")
    if name == "quick":
        return Profile(
            "quick", 150, 2, (30, 20), quick_faults(rng), settle=(6.0, 10.0), budget="<= 10 min on 2 busy cores"
        )
    if name == "full":
        return Profile("full", 1000, 4, (60, 30), full_faults(rng), flood=10_000, node=True, drain_timeout=1800.0)
    if name == "smoke":  # development only: a couple of faults on a handful of jobs
        faults = (*_kills(1), Fault("writer", "10 Hz writer", {"seconds": 20}, 20, True))
        return Profile("smoke", 20, 1, (10, 10), faults, calm_jobs=4, settle=(5.0, 8.0))
    raise ValueError(f"unknown profile {name!r} (quick, full, smoke)")


@dataclass
class Plan:
    planned: list[Planned] = field(default_factory=list)
    window: float = 0.0  # seconds from the workload's start to the end of the last fault

    def as_list(self) -> list[dict[str, Any]]:
        return [{"at": round(p.at, 1), "fault": p.fault.label, "params": p.fault.params} for p in self.planned]


def plan(prof: Profile, seed: int, lead_in: float = 20.0) -> Plan:
    """Sequential faults in a seeded order and spacing; background faults at seeded moments."""
    rng = random.Random(f"schedule/{seed}")
    sequential = [f for f in prof.faults if not f.background]
    background = [f for f in prof.faults if f.background]
    rng.shuffle(sequential)
    out, at = [], lead_in
    for fault in sequential:
        out.append(Planned(round(at, 1), fault))
        at += fault.duration + rng.uniform(*prof.settle)
    window = at
    for fault in background:
        out.append(Planned(round(rng.uniform(lead_in, max(lead_in, window - fault.duration)), 1), fault))
    out.sort(key=lambda p: p.at)
    return Plan(out, window)
