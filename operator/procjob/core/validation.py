"""What the schema cannot check about a spec: problems only the operator's settings, its registry of
built-in stages or a whole-spec walk can find. Each problem names its field; any problem makes the
job InvalidSpec before a pod runs.

Built-in stages: `uses` must name a registered stage, `with` must validate against its params
model, and a template may name only outputs its descriptor lists. `with` strings may hold
{{ templates }} that only render when the pod is built, so a problem with a value that holds a
template is left to the worker (which validates the rendered parameters and exits 2); a missing or
unknown parameter is reported all the same, since no template can supply or remove a key.

The schema (and the same pydantic models) already bound the spec's size and shape, so this walk is
short and never raises on a spec that parsed: it returns problems, it does not throw them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from procjob.core.config import CoreConfig
from procjob.core.dag import cycle_problems
from procjob.core.podsecurity import security_problems
from procjob.core.templating import STAGE_REF, TEMPLATE, check_spec, templated_strings
from procjob.models.builtin.base import ParamProblem, param_problems
from procjob.models.builtin.registry import BUILTIN_STAGES, known_stages
from procjob.models.spec import PodMetadata, ProcessingJobSpec

# Kubernetes' own label and annotation domains: keys there change how Kubernetes and its add-ons
# treat the pod (AppArmor and seccomp profiles, mesh injection, eviction, scheduling), so only the
# platform team may open a prefix of them (CoreConfig.allowed_metadata_prefixes).
KUBERNETES_DOMAINS = ("kubernetes.io", "k8s.io")


def key_domain(key: str) -> str | None:
    """The DNS prefix of a label or annotation key (`example.com` of `example.com/x`), or None."""
    prefix, slash, _ = key.rpartition("/")
    return prefix.lower() if slash else None


def is_kubernetes_key(key: str) -> bool:
    """Whether the key's prefix is kubernetes.io or k8s.io, or a subdomain of either."""
    domain = key_domain(key)
    return domain is not None and any(domain == d or domain.endswith(f".{d}") for d in KUBERNETES_DOMAINS)


def metadata_problems(where: str, keys: Iterable[str], allowed_prefixes: tuple[str, ...]) -> list[str]:
    """One problem per key in the Kubernetes domains that no allowed prefix opens."""
    allowed = ", ".join(allowed_prefixes) or "none"
    return [
        f"{where}: {key!r} is in the kubernetes.io/k8s.io domains, which the operator does not allow "
        f"(allowed prefixes: {allowed})"
        for key in keys
        if is_kubernetes_key(key) and not key.startswith(allowed_prefixes)
    ]


def _pod_metadata(spec: ProcessingJobSpec) -> Iterator[tuple[str, PodMetadata]]:
    """Every place that sets labels and annotations of pods, with its path."""
    if spec.pod_template is not None and spec.pod_template.metadata is not None:
        yield "spec.podTemplate.metadata", spec.pod_template.metadata
    for index, stage in enumerate(spec.all_stages):
        where = spec.stage_path(index)
        if stage.pod_metadata is not None:
            yield f"{where}.podMetadata", stage.pod_metadata
        if stage.pod_template is not None and stage.pod_template.metadata is not None:
            yield f"{where}.podTemplate.metadata", stage.pod_template.metadata


def _metadata(spec: ProcessingJobSpec, config: CoreConfig) -> list[str]:
    problems: list[str] = []
    for where, metadata in _pod_metadata(spec):
        fields: tuple[tuple[str, Mapping[str, str] | None], ...] = (
            ("labels", metadata.labels),
            ("annotations", metadata.annotations),
        )
        for field, values in fields:
            problems += metadata_problems(f"{where}.{field}", values or {}, config.allowed_metadata_prefixes)
    return problems


# Problems no template can cause: a required parameter left out, a parameter the stage does not know.
_KEY_PROBLEMS = frozenset({"missing", "extra_forbidden"})


def value_at(value: Any, path: tuple[str | int, ...]) -> Any:
    """The part of a JSON-like value a problem's path names, or None where the path leads nowhere."""
    for part in path:
        if isinstance(value, Mapping) and isinstance(part, str):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            return None
    return value


def rendered_later(problem: ParamProblem, params: Mapping[str, Any]) -> bool:
    """Whether the problem's value holds a template, so only the rendered value can be judged."""
    if problem.kind in _KEY_PROBLEMS:
        return False
    return TEMPLATE.search(json.dumps(value_at(params, problem.path), default=str)) is not None


def builtin_stage_problems(spec: ProcessingJobSpec) -> list[str]:
    """An unknown `uses`, and each `with` field its stage's params model refuses (values that hold a
    template excepted: they are judged when rendered, by the worker)."""
    problems: list[str] = []
    for index, stage in enumerate(spec.all_stages):
        if stage.uses is None:
            continue
        where = spec.stage_path(index)
        builtin = BUILTIN_STAGES.get(stage.uses)
        if builtin is None:
            problems.append(f"{where}.uses: unknown built-in stage {stage.uses!r} (known: {known_stages()})")
            continue
        params = stage.with_ or {}
        for problem in param_problems(builtin.params, params):
            if not rendered_later(problem, params):
                field = f"{where}.with.{problem.field}" if problem.field else f"{where}.with"
                problems.append(f"{field}: {problem.message}")
    return problems


def builtin_output_problems(spec: ProcessingJobSpec) -> list[str]:
    """Each template naming an output a built-in stage never writes (its descriptor lists them all)."""
    builtins = {stage.name: BUILTIN_STAGES.get(stage.uses or "") for stage in spec.all_stages}
    declared = {name: builtin.outputs for name, builtin in builtins.items() if builtin is not None}
    problems: list[str] = []
    for index in range(len(spec.all_stages)):
        for path, text in templated_strings(spec, index):
            for expr in TEMPLATE.findall(text):
                match = STAGE_REF.match(expr)
                if match is None or match.group(1) not in declared:
                    continue
                stage, key, outputs = match.group(1), match.group(3), declared[match.group(1)]
                if key not in outputs:
                    problems.append(
                        f"{path}: {{{{ {expr} }}}}: built-in stage {stage!r} has no output {key!r} "
                        f"(outputs: {', '.join(outputs)})"
                    )
    return problems


def finally_security_problems(spec: ProcessingJobSpec, namespace: str, config: CoreConfig) -> list[str]:
    """core.podsecurity's checks of the stages, applied to the finally stages (each problem named by its
    spec.finally path; the job-wide ones are the stages' own)."""
    if not spec.finally_:
        return []
    as_stages = spec.model_copy(update={"stages": spec.finally_, "finally_": None})
    return [p.replace("spec.stages[", "spec.finally[") for p in security_problems(as_stages, namespace, config)]


def validate_spec(spec: ProcessingJobSpec, config: CoreConfig, namespace: str) -> list[str]:
    """Problems the schema cannot see: dependency cycles, templates, built-in stages, their parameters and
    outputs, service accounts allowed by this operator, pod label and annotation keys in the Kubernetes
    domains that the operator's settings do not allow, and security contexts beyond the namespace's Pod
    Security Standards profile (core.podsecurity)."""
    problems = cycle_problems(spec.stages, "stages") + cycle_problems(spec.finally_ or [], "finally")
    if problems:
        return problems  # the rest assumes a graph (templates name upstream stages)
    problems += check_spec(spec)
    problems += builtin_stage_problems(spec)
    problems += builtin_output_problems(spec)
    account = spec.service_account_name
    if account is not None and account not in config.allowed_service_accounts:
        allowed = ", ".join(sorted(config.allowed_service_accounts)) or "none"
        problems.append(f"spec.serviceAccountName: {account!r} is not allowed by the operator (allowed: {allowed})")
    problems += _metadata(spec, config)
    security = dict.fromkeys(
        security_problems(spec, namespace, config) + finally_security_problems(spec, namespace, config)
    )
    return problems + sorted(security, key=lambda p: p.startswith("spec: "))  # the namespace's note last
