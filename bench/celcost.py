"""The API server's CPU per ProcessingJob status write, with the CRD's CEL rules and without.

    python -m bench.celcost [--writes 3000] [--variants as-is,no-spec-cel,no-cel]

A status write is validated against the whole object: kube-apiserver evaluates every
`x-kubernetes-validations` rule present in it, the spec's too, although a status write cannot change
the spec (apiextensions-apiserver's statusStrategy.ValidateUpdate). This measures what that costs,
on the rig, with nothing else running: for each variant of the CRD it creates one job shaped like
the benchmark's (three stages, podMetadata labels), then PUTs its status `--writes` times with a
real status (the core's first decision for that job, its condition's message changed each time so
every write stores), and reads kube-apiserver's CPU seconds before and after.

Variants: `as-is` (crds/processingjob.yaml); `no-spec-cel` (every rule under `spec` removed: what
a status write would cost if the spec's rules did not run on it); `no-cel` (no rule at all);
`no-transition` (the rules that read oldSelf removed); `no-spec-top` (the 17 rules at `spec` itself
removed, the stages' kept); `merged-transition` and `merged-top` (the rules at `spec` joined into one
or two rules with &&: is it a fixed cost per rule?); `guarded-top` (each rule at `spec` skipped when
the spec equals the old one: is an equality cheaper than the rules?).
The rig must be up (`make rig-up`); the operator must not be running against it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import yaml

from bench.api import Api, BenchError
from bench.costs import _cpu
from bench.rigctl import CRD, KUBECONFIG, Rig, kubectl
from procjob.core.config import CoreConfig
from procjob.core.decide import decide
from procjob.models.job import ProcessingJob

NAMESPACE = "bench-celcost"
GROUP_PATH = "/apis/procjob.dev/v1alpha1"


def strip_rules(node: Any, only: str = "") -> None:
    """Remove the rules (those whose text holds `only`, if given) from a schema and everything under it."""
    if isinstance(node, dict):
        kept = [r for r in node.pop(RULES, None) or [] if only and only not in r["rule"]]
        if kept:
            node[RULES] = kept
        for key, value in node.items():
            if key != RULES:
                strip_rules(value, only)
    elif isinstance(node, list):
        for value in node:
            strip_rules(value, only)


def _joined(rules: list[dict[str, Any]], message: str) -> dict[str, Any]:
    return {"rule": " && ".join(f"({r['rule']})" for r in rules), "message": message}


def _merged(spec: dict[str, Any], everything: bool) -> None:
    transition = [r for r in spec[RULES] if "oldSelf" in r["rule"]]
    rest = [r for r in spec[RULES] if "oldSelf" not in r["rule"]]
    spec[RULES] = [_joined(transition, "immutable"), *([_joined(rest, "invalid")] if everything else rest)]


def _guarded(spec: dict[str, Any]) -> None:
    for rule in spec[RULES]:
        if "oldSelf" in rule["rule"]:
            rule["rule"] = f"self == oldSelf || ({rule['rule']})"
        else:
            rule["rule"] = f"(oldSelf.hasValue() && oldSelf.value() == self) || ({rule['rule']})"
            rule["optionalOldSelf"] = True


RULES = "x-kubernetes-validations"
CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "as-is": lambda schema: None,
    "no-spec-cel": lambda schema: strip_rules(schema["properties"]["spec"]),
    "no-cel": strip_rules,
    "no-transition": lambda schema: strip_rules(schema, only="oldSelf"),
    "no-spec-top": lambda schema: schema["properties"]["spec"].pop(RULES, None),
    "merged-transition": lambda schema: _merged(schema["properties"]["spec"], everything=False),
    "merged-top": lambda schema: _merged(schema["properties"]["spec"], everything=True),
    "guarded-top": lambda schema: _guarded(schema["properties"]["spec"]),
}
VARIANTS = tuple(CHANGES)


def crd_variant(name: str) -> dict[str, Any]:
    if name not in CHANGES:
        raise SystemExit(f"unknown variant {name!r}: one of {', '.join(VARIANTS)}")
    crd: dict[str, Any] = yaml.safe_load(CRD.read_text())
    for version in crd["spec"]["versions"]:
        CHANGES[name](version["schema"]["openAPIV3Schema"])
    return crd


def job_body(name: str) -> dict[str, Any]:
    stages = [
        {"name": f"s{k}", "image": "bench/worker:1", "podMetadata": {"labels": {"chain": name, "stage": str(k)}}}
        for k in range(3)
    ]
    return {
        "apiVersion": "procjob.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"stages": stages},
    }


async def measure(api: Api, variant: str, writes: int) -> dict[str, Any]:
    Rig.apply_crd(json.dumps(crd_variant(variant)))
    await asyncio.sleep(3.0)  # the API server's handler for the new schema
    name = f"cel-{variant}-{int(time.time())}"
    path = f"{GROUP_PATH}/namespaces/{NAMESPACE}/processingjobs"
    body = await api.create(path, job_body(name))
    status = decide(ProcessingJob.from_api(body), [], datetime.now(UTC), CoreConfig()).status.to_api()
    apiserver = Rig.components()["kube-apiserver"]
    before, started = _cpu(apiserver), time.monotonic()
    for i in range(writes):
        update = copy.deepcopy(body)
        update["status"] = copy.deepcopy(status)
        update["status"]["conditions"][0]["message"] = f"write {i}"
        body = await api.request("PUT", f"{path}/{name}/status", body=update)
    cpu, wall = _cpu(apiserver) - before, time.monotonic() - started
    return {
        "writes": writes,
        "apiserver_cpu_ms_per_write": round(1000 * cpu / writes, 3),
        "wall_ms_per_write": round(1000 * wall / writes, 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--variants", default="as-is,no-spec-cel,no-cel", help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=2, help="each variant measured this many times, interleaved")
    args = parser.parse_args()
    with contextlib.suppress(BenchError):  # it exists from an earlier run
        kubectl("create", "namespace", NAMESPACE)
    api = Api(KUBECONFIG, concurrency=1)
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for _ in range(args.rounds):
            for variant in args.variants.split(","):
                result = await measure(api, variant, args.writes)
                results.setdefault(variant, []).append(result)
                print(variant, result, flush=True)
    finally:
        await api.close()
        Rig.apply_crd()
        kubectl("delete", "namespace", NAMESPACE, "--wait=false")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
