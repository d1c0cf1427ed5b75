"""The mixed workload: what each job is, when it arrives, and its manifest; all from the seed.

Pods run on kwok's fake Nodes and end as their annotations say (hack/rig/README.md): a stage's
`rig.procjob.dev/*` annotations (through `podMetadata`) choose how long it runs, whether it fails
and with which exit code, and for how many attempts. Every job uses the default retry rules
(exit 2: FailJob; Evicted/Disruption: Ignore; anything else: Retry, charged) and a whole-second
`delaysSeconds` schedule, or an exponential backoff for the `expo` kind, so the checker can replay
the policy on its own (chaos.policy) without asking the operator's code.

Kinds (the driver acts on some of them while they run, see chaos.actions):
ok (1-3 stages succeed), flaky (a stage fails K <= limit times), expo (flaky, exponential
backoff with jitter), permanent (exit 2: FailJob), exhaust (fails past its limit), retried
(exhausts, then `procjob.dev/retry` makes it succeed), cancel, suspend (suspended and resumed
mid-stage), delete (deleted mid-stage), disrupt (its pod deleted, force-deleted or evicted).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

IMAGE = "registry.example/procjob-chaos:1"
KIND_LABEL = "chaos.procjob.dev/kind"
RUN_LABEL = "chaos.procjob.dev/run"
ANNOTATION = "rig.procjob.dev/"

# kind -> weight in the mix
MIX: dict[str, int] = {
    "ok": 28,
    "flaky": 14,
    "expo": 5,
    "permanent": 6,
    "exhaust": 6,
    "retried": 7,
    "cancel": 7,
    "suspend": 9,
    "delete": 5,
    "disrupt": 13,
}


@dataclass(frozen=True)
class JobPlan:
    name: str
    namespace: str
    kind: str
    at: float  # seconds after the workload's start when the job is created
    spec: dict[str, Any]
    act_after: float = 0.0  # for actions: seconds after the job starts running (cancel, suspend, delete, disrupt)
    hold: float = 0.0  # suspend: seconds suspended

    def manifest(self, run_id: str) -> dict[str, Any]:
        return {
            "apiVersion": "procjob.dev/v1alpha1",
            "kind": "ProcessingJob",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {KIND_LABEL: self.kind, RUN_LABEL: run_id},
            },
            "spec": self.spec,
        }


@dataclass
class Workload:
    plans: list[JobPlan] = field(default_factory=list)

    def by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for plan in self.plans:
            counts[plan.kind] = counts.get(plan.kind, 0) + 1
        return dict(sorted(counts.items()))


def stage(name: str, **rig: float | int | str) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "image": IMAGE}
    if rig:
        notes = {ANNOTATION + k.replace("_", "-"): str(v) for k, v in rig.items()}
        body["podMetadata"] = {"annotations": notes}
    return body


def _run(rng: random.Random, low: float, high: float) -> str:
    return f"{rng.uniform(low, high):.1f}"


def _stages(rng: random.Random, count: int, special: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """`count` stages that succeed in 0.5-3 s; one of them (random) replaced by `special`'s annotations."""
    chosen = rng.randrange(count)
    out = []
    for i in range(count):
        rig: dict[str, Any] = {"run_seconds": _run(rng, 0.5, 3.0)}
        if special is not None and i == chosen:
            rig = dict(special)
        out.append(stage(f"s{i + 1}", **rig))
    return out


def spec_for(kind: str, rng: random.Random) -> dict[str, Any]:
    """The spec of one job of `kind` (see the module docstring)."""
    retry: dict[str, Any] = {"limit": 3, "delaysSeconds": [1, 2]}
    n = rng.randint(1, 3)
    if kind == "ok":
        stages = _stages(rng, n)
    elif kind in ("flaky", "expo"):
        special = {"fail_attempts": rng.randint(1, 2), "exit_code": rng.choice([1, 75]), "run_seconds": "0.5"}
        stages = _stages(rng, n, special)
        if kind == "expo":
            retry = {"limit": 3, "backoff": {"initialSeconds": 1, "factor": 2, "maxSeconds": 8, "jitter": 0.2}}
    elif kind == "permanent":
        stages = _stages(rng, n, {"fail_attempts": 99, "exit_code": 2, "run_seconds": "0.5"})
    elif kind == "exhaust":
        stages = _stages(rng, n, {"fail_attempts": 99, "exit_code": 1, "run_seconds": "0.5"})
        retry = {"limit": 1, "delaysSeconds": [1]}
    elif kind == "retried":  # attempts 1 and 2 fail (limit 1): Failed; after the retry, attempt 3 succeeds
        stages = _stages(rng, n, {"fail_attempts": 2, "exit_code": 1, "run_seconds": "0.5"})
        retry = {"limit": 1, "delaysSeconds": [1]}
    elif kind == "cancel":
        stages = _stages(rng, n, {"run_seconds": _run(rng, 15, 25)})
    elif kind == "suspend":
        stages = _stages(rng, n, {"run_seconds": _run(rng, 5, 8)})
    elif kind == "delete":
        stages = _stages(rng, n, {"run_seconds": _run(rng, 20, 30)})
    elif kind == "disrupt":
        stages = _stages(rng, n, {"run_seconds": _run(rng, 6, 10)})
    else:
        raise ValueError(f"unknown job kind {kind!r}")
    spec: dict[str, Any] = {"stages": stages, "retry": retry, "podGC": rng.choice(["OnCompletion", "Never"])}
    if rng.random() < 0.3:
        spec["priority"] = rng.randint(1, 5)
    return spec


def generate(seed: int, count: int, namespaces: list[str], window: float) -> Workload:
    """`count` jobs of the mix, spread over `window` seconds of arrivals, round robin over namespaces."""
    rng = random.Random(f"workload/{seed}")
    kinds = list(MIX)
    weights = [MIX[k] for k in kinds]
    plans = []
    for i in range(count):
        kind = rng.choices(kinds, weights)[0]
        at = round(rng.uniform(0, window), 2) if i >= 5 else 0.0  # a few at once: the queue fills at start
        plans.append(
            JobPlan(
                name=f"{kind}-{i:05d}",
                namespace=namespaces[i % len(namespaces)],
                kind=kind,
                at=at,
                spec=spec_for(kind, rng),
                act_after=round(rng.uniform(0.5, 4.0), 2),
                hold=round(rng.uniform(2.0, 6.0), 2),
            )
        )
    plans.sort(key=lambda p: (p.at, p.name))
    return Workload(plans)


def flood(count: int, namespace: str) -> Workload:
    """The jobs created while no operator runs (the 10,000-job drain): one short stage each."""
    spec = {"stages": [stage("only", run_seconds="0.2")], "podGC": "OnCompletion"}
    return Workload([JobPlan(f"flood-{i:05d}", namespace, "flood", 0.0, spec) for i in range(count)])
