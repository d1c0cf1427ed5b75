"""The Pod Security Standards profile a job's pods must keep, which depends on its namespace.

The schema (models.security) already refuses what no profile allows — privileged containers, host
namespaces, hostPath and other volume types, unconfined seccomp or AppArmor, capabilities beyond
baseline's, unsafe sysctls, an unmasked /proc — so what it lets through is at most *baseline*. Here
the rest of *restricted* is enforced, except in the namespaces the platform lists for baseline
(CoreConfig.baseline_namespaces, --baseline-namespaces): uid, gid and fsGroup 0, runAsNonRoot false,
allowPrivilegeEscalation true, and added capabilities other than NET_BIND_SERVICE.

In every namespace, a pod that would run as uid 0 while runAsNonRoot is true (the operator's default)
is refused too: the kubelet would refuse to start its container, and the attempt would only time out.

Each problem names the field as written in the spec; any problem makes the job InvalidSpec before a pod.
"""

from __future__ import annotations

from collections.abc import Iterator

from procjob.core.config import CoreConfig
from procjob.models.podtemplate import PodTemplate
from procjob.models.security import RESTRICTED_CAPABILITIES, PodSecurityContext, SecurityContext
from procjob.models.spec import ProcessingJobSpec, Stage

ROOT = 0


def _template_context(template: PodTemplate | None) -> PodSecurityContext | None:
    return template.spec.security_context if template is not None and template.spec is not None else None


def _pod_contexts(spec: ProcessingJobSpec) -> Iterator[tuple[str, PodSecurityContext]]:
    """Every pod-level securityContext of the spec, with its path."""
    job = _template_context(spec.pod_template)
    if job is not None:
        yield "spec.podTemplate.spec.securityContext", job
    for index, stage in enumerate(spec.stages):
        own = _template_context(stage.pod_template)
        if own is not None:
            yield f"spec.stages[{index}].podTemplate.spec.securityContext", own


def _beyond_restricted_pod(where: str, context: PodSecurityContext) -> Iterator[str]:
    if context.run_as_non_root is False:
        yield f"{where}.runAsNonRoot: false"
    for field, value in (("runAsUser", context.run_as_user), ("runAsGroup", context.run_as_group)):
        if value == ROOT:
            yield f"{where}.{field}: 0 (root)"
    if context.fs_group == ROOT:
        yield f"{where}.fsGroup: 0 (root)"
    if ROOT in (context.supplemental_groups or []):
        yield f"{where}.supplementalGroups: 0 (root)"


def _beyond_restricted_container(where: str, context: SecurityContext) -> Iterator[str]:
    if context.run_as_non_root is False:
        yield f"{where}.runAsNonRoot: false"
    for field, value in (("runAsUser", context.run_as_user), ("runAsGroup", context.run_as_group)):
        if value == ROOT:
            yield f"{where}.{field}: 0 (root)"
    if context.allow_privilege_escalation:
        yield f"{where}.allowPrivilegeEscalation: true"
    added = [
        c for c in (context.capabilities.add or [] if context.capabilities else []) if c not in RESTRICTED_CAPABILITIES
    ]
    if added:
        yield f"{where}.capabilities.add: {', '.join(added)}"


def _root_without_leave(spec: ProcessingJobSpec, index: int, stage: Stage, config: CoreConfig) -> str | None:
    """A stage whose container would run as uid 0 with runAsNonRoot true, or None."""
    pod = PodSecurityContext()
    for template in (spec.pod_template, stage.pod_template):
        context = _template_context(template)
        if context is not None:
            pod = pod.model_copy(update={k: v for k, v in context if v is not None})
    own = stage.security_context or SecurityContext()
    uid = next(u for u in (own.run_as_user, pod.run_as_user, config.run_as_user) if u is not None)
    non_root = next(n for n in (own.run_as_non_root, pod.run_as_non_root, True) if n is not None)
    if uid == ROOT and non_root:
        return (
            f"spec.stages[{index}]: the container would run as uid 0 while runAsNonRoot is true, which the kubelet "
            "refuses: set runAsNonRoot: false too (podTemplate.spec.securityContext or the stage's securityContext)"
        )
    return None


def security_problems(spec: ProcessingJobSpec, namespace: str, config: CoreConfig) -> list[str]:
    """What the job's security contexts ask for beyond its namespace's profile, one problem per field."""
    problems = [
        problem
        for index, stage in enumerate(spec.stages)
        if (problem := _root_without_leave(spec, index, stage, config)) is not None
    ]
    if namespace in config.baseline_namespaces:
        return problems
    beyond = [found for where, context in _pod_contexts(spec) for found in _beyond_restricted_pod(where, context)]
    for index, stage in enumerate(spec.stages):
        if stage.security_context is not None:
            beyond += _beyond_restricted_container(f"spec.stages[{index}].securityContext", stage.security_context)
    if not beyond:
        return problems
    listed = ", ".join(sorted(config.baseline_namespaces)) or "none"
    return [
        *problems,
        *(f"{found} needs the Pod Security Standards' baseline profile" for found in beyond),
        f"spec: restricted applies in namespace {namespace}; the operator allows baseline only in the namespaces "
        f"it lists (--baseline-namespaces: {listed})",
    ]
