"""A stage's pod template: the job's podTemplate with the stage's merged over it, and the parts of the
pod it decides (metadata, Pod fields, security contexts, volumes and mounts), over the operator's
secure defaults.

The merge, field by field (README, "Pod templates"):
- maps — labels, annotations, nodeSelector — key by key, the stage's value winning; a stage's
  podMetadata (the older spelling) sits between the job's template and the stage's;
- lists of named items — volumes, imagePullSecrets — by name, the stage's item replacing the job's;
- securityContext field by field, affinity by its three parts (node, pod, pod anti-affinity);
- everything else (tolerations, topologySpreadConstraints, priorityClassName, runtimeClassName, …)
  whole: the stage's value if it sets one, else the job's.

Pure: models in, models and wire dicts out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from procjob.core.config import CoreConfig
from procjob.models.container import PodMetadata
from procjob.models.contract import TMP_PATH, TMP_SIZE_LIMIT, TMP_VOLUME
from procjob.models.podtemplate import PodTemplate, TemplatePodSpec
from procjob.models.scheduling import Affinity, LocalObjectReference
from procjob.models.security import PodSecurityContext, ProfileType, SeccompProfile, SecurityContext
from procjob.models.spec import ProcessingJobSpec, Stage
from procjob.models.volumes import Volume, VolumeMount

Model = TypeVar("Model", PodSecurityContext, Affinity, SecurityContext)
Named = TypeVar("Named", Volume, LocalObjectReference)

# Merged field by field (one level), or by item name; every other field of TemplatePodSpec is replaced whole.
_FIELD_BY_FIELD = frozenset({"security_context", "affinity"})
_BY_NAME = frozenset({"volumes", "image_pull_secrets"})
_KEY_BY_KEY = frozenset({"node_selector"})
RUNTIME_DEFAULT = SeccompProfile(type=ProfileType.RUNTIME_DEFAULT)


def overlay(base: Model | None, top: Model | None) -> Model | None:
    """`top`'s fields that are set, over `base`'s."""
    if base is None or top is None:
        return top if base is None else base
    return base.model_copy(update={name: value for name, value in top if value is not None})


def by_name(base: Sequence[Named] | None, top: Sequence[Named] | None) -> list[Named] | None:
    """`base` with `top`'s items replacing those of the same name, then `top`'s new ones, in order."""
    if base is None:
        return None if top is None else list(top)
    if top is None:
        return list(base)
    replaced = {item.name: item for item in top}
    merged = [replaced.pop(item.name, item) for item in base]
    return merged + [item for item in top if item.name in replaced]


def key_by_key(*maps: Mapping[str, str] | None) -> dict[str, str] | None:
    """The maps merged, later keys winning; None when none is set."""
    if all(m is None for m in maps):
        return None
    return {key: value for m in maps for key, value in (m or {}).items()}


def merge_spec(base: TemplatePodSpec | None, top: TemplatePodSpec | None) -> TemplatePodSpec | None:
    """A stage's Pod fields over the job's, by the rules above."""
    if base is None or top is None:
        return top if base is None else base
    update: dict[str, Any] = {}
    for name in TemplatePodSpec.model_fields:
        under, over = getattr(base, name), getattr(top, name)
        if name in _FIELD_BY_FIELD:
            update[name] = overlay(under, over)
        elif name in _BY_NAME:
            update[name] = by_name(under, over)
        elif name in _KEY_BY_KEY:
            update[name] = key_by_key(under, over)
        else:
            update[name] = over if over is not None else under
    return base.model_copy(update=update)


@dataclass(frozen=True, slots=True)
class StageTemplate:
    """What the job's and a stage's templates say about that stage's pods, merged."""

    labels: dict[str, str]
    annotations: dict[str, str]
    spec: TemplatePodSpec


def _metadata(*parts: PodMetadata | None) -> tuple[dict[str, str], dict[str, str]]:
    labels = key_by_key(*(p.labels if p else None for p in parts)) or {}
    annotations = key_by_key(*(p.annotations if p else None for p in parts)) or {}
    return labels, annotations


def stage_template(spec: ProcessingJobSpec, stage: Stage) -> StageTemplate:
    """The job's podTemplate, then the stage's podMetadata, then the stage's podTemplate."""
    job, own = spec.pod_template or PodTemplate(), stage.pod_template or PodTemplate()
    labels, annotations = _metadata(job.metadata, stage.pod_metadata, own.metadata)
    merged = merge_spec(job.spec, own.spec) or TemplatePodSpec()
    return StageTemplate(labels=labels, annotations=annotations, spec=merged)


def pod_security_context(template: TemplatePodSpec, config: CoreConfig) -> dict[str, Any]:
    """The operator's pod security context with the template's fields over it."""
    defaults: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": config.run_as_user,
        "runAsGroup": config.run_as_user,
        "fsGroup": config.run_as_user,
        "seccompProfile": RUNTIME_DEFAULT.to_api(),
    }
    own = template.security_context
    return defaults | (own.to_api() if own is not None else {})


def container_security_context(
    own: SecurityContext | None = None, pod: PodSecurityContext | None = None
) -> dict[str, Any]:
    """The operator's container security context with the stage's fields over it. runAsNonRoot and the
    seccomp profile follow the pod's where the stage sets none; ALL capabilities are always dropped."""
    pod = pod or PodSecurityContext()
    own = own or SecurityContext()
    non_root = own.run_as_non_root if own.run_as_non_root is not None else pod.run_as_non_root
    capabilities: dict[str, Any] = {"drop": sorted({"ALL", *(own.capabilities.drop or [] if own.capabilities else [])})}
    if own.capabilities is not None and own.capabilities.add:
        capabilities["add"] = list(own.capabilities.add)
    return (
        {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True if non_root is None else non_root,
            "seccompProfile": (pod.seccomp_profile or RUNTIME_DEFAULT).to_api(),
        }
        | own.to_api()
        | {"capabilities": capabilities}
    )


def volumes_and_mounts(
    template: TemplatePodSpec, mounts: Sequence[VolumeMount] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes — those the stage mounts, in the template's order — and the container's mounts,
    with the operator's /tmp emptyDir unless the stage mounts a volume of its own there."""
    mounts = list(mounts or [])
    mounted = {m.name for m in mounts}
    volumes = [v.to_api() for v in template.volumes or [] if v.name in mounted]
    wire = [m.to_api() for m in mounts]
    if all(m.mount_path != TMP_PATH for m in mounts):
        volumes.append({"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}})
        wire.append({"name": TMP_VOLUME, "mountPath": TMP_PATH})
    return volumes, wire


# Template fields rendered over the operator's defaults (above) rather than copied as they are.
_RENDERED_APART = ("volumes", "security_context")


def pod_fields(template: TemplatePodSpec) -> dict[str, Any]:
    """The template's other fields, as Pod fields: nodeSelector, tolerations, affinity, …"""
    return template.model_copy(update=dict.fromkeys(_RENDERED_APART)).to_api()
