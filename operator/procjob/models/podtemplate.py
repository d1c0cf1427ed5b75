"""`spec.podTemplate` and `stages[].podTemplate`: the parts of a Pod a job may choose, named and shaped
as in corev1's PodTemplateSpec, so that `kubectl explain pj.spec.podTemplate.spec.tolerations` reads
like `kubectl explain pod.spec.tolerations`.

A stage's template is merged over the job's field by field (core.podtemplate): maps (labels,
annotations, nodeSelector) key by key, volumes and imagePullSecrets by name, securityContext field by
field, affinity by its three parts, and every other field — tolerations, topologySpreadConstraints,
priorityClassName, runtimeClassName — replaced whole by the stage's. The operator's own parts of a
pod (its container, restartPolicy, serviceAccountName and token, its labels, /tmp) are not here.

Fields the job may never set are refused by the schema for every client: host namespaces accept only
false, and everything else not declared here is an unknown field (kubectl's strict field validation
names it). The spec-level rules at the bottom need the whole spec: a mount must name a declared
volume; a service-account token needs spec.serviceAccountName.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator
from pydantic.config import JsonDict

from procjob.models.base import ApiModel
from procjob.models.container import LabelKey, LabelValue, PodMetadata, cel_rules
from procjob.models.scheduling import Affinity, LocalObjectReference, Toleration, TopologySpreadConstraint
from procjob.models.security import PodSecurityContext
from procjob.models.syntax import DNS_SUBDOMAIN, KEYS_QUALIFIED, cel_keys_are_qualified, key_problem
from procjob.models.volumes import Volume, VolumeMount

if TYPE_CHECKING:
    from procjob.models.spec import ProcessingJobSpec

MAX_VOLUMES = 32
MAX_MOUNTS = 32
ClassName = Annotated[str, Field(min_length=1, max_length=253, pattern=f"^{DNS_SUBDOMAIN}$")]
NOT_ON_HOST = "Only false: worker pods never share the node's {}."
NODE_SELECTOR_KEYS = f"nodeSelector {KEYS_QUALIFIED}"
MOUNT_UNDECLARED = "volumeMounts must name a volume of the job's or the stage's podTemplate.spec.volumes"
PROJECTION_NEEDS_ACCOUNT = (
    "a projected serviceAccountToken needs spec.serviceAccountName (otherwise the pod runs as the namespace's "
    "default service account, whose token the operator does not hand out)"
)


MAX_GRACE_SECONDS = 3600  # a stopped attempt holds its queue slot until its pod is gone


def list_map(*keys: str) -> JsonDict:
    """The schema of a list whose items are unique by these keys, as in corev1 (the API server checks it)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [*keys]}


class TemplatePodSpec(ApiModel):
    """The Pod fields a job may set: scheduling, pull secrets, volumes and the pod's security context."""

    model_config = cel_rules(
        [{"rule": cel_keys_are_qualified("nodeSelector"), "message": NODE_SELECTOR_KEYS, "fieldPath": ".nodeSelector"}]
    )

    node_selector: dict[LabelKey, LabelValue] | None = Field(
        default=None, max_length=32, description="Node labels the pod's node must have, e.g. {type: gpu}."
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Taints the pod tolerates (e.g. of a GPU or spot node pool)."
    )
    affinity: Affinity | None = Field(default=None, description="Node affinity, pod affinity and anti-affinity.")
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        default=None,
        max_length=8,
        json_schema_extra=list_map("topologyKey", "whenUnsatisfiable"),
        description="How pods spread over zones or nodes.",
    )
    priority_class_name: ClassName | None = Field(
        default=None, description="PriorityClass of the pods (the namespace's ResourceQuota may limit which)."
    )
    runtime_class_name: ClassName | None = Field(default=None, description="RuntimeClass of the pods, e.g. gvisor.")
    termination_grace_period_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="Seconds a container has to exit after SIGTERM (a timeout, cancel, suspend, deadline) before "
        "SIGKILL; default 30.",
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None,
        max_length=16,
        json_schema_extra=list_map("name"),
        description="Secrets (in the job's namespace) to pull images with.",
    )
    volumes: list[Volume] | None = Field(
        default=None,
        max_length=MAX_VOLUMES,
        json_schema_extra=list_map("name"),
        description="Volumes stages may mount (a pod gets those its stage mounts): configMap, secret, emptyDir, "
        "persistentVolumeClaim, ephemeral, projected.",
    )
    security_context: PodSecurityContext | None = Field(
        default=None, description="Merged over the operator's: non-root 65532, seccomp RuntimeDefault."
    )
    host_network: Literal[False] | None = Field(default=None, description=NOT_ON_HOST.format("network"))
    host_pid: Literal[False] | None = Field(default=None, alias="hostPID", description=NOT_ON_HOST.format("PIDs"))
    host_ipc: Literal[False] | None = Field(default=None, alias="hostIPC", description=NOT_ON_HOST.format("IPC"))

    @field_validator("node_selector")
    @classmethod
    def _keys(cls, selector: dict[str, str] | None) -> dict[str, str] | None:
        for key in selector or {}:
            problem = key_problem(key)
            if problem:
                raise ValueError(f"{NODE_SELECTOR_KEYS}: {problem}")
        return selector

    @field_validator("volumes")
    @classmethod
    def _unique_volumes(cls, volumes: list[Volume] | None) -> list[Volume] | None:
        duplicate = _duplicate(v.name for v in volumes or [])
        if duplicate is not None:
            raise ValueError(f"volume names must be unique: {duplicate!r} appears twice")
        return volumes


class PodTemplate(ApiModel):
    """Labels, annotations and Pod fields of the worker pods. A stage's template is merged over the job's."""

    metadata: PodMetadata | None = Field(
        default=None,
        description="Labels and annotations of the pods, merged key by key (procjob.dev/ keys are the operator's; "
        "kubernetes.io and k8s.io keys need --allowed-metadata-prefixes).",
    )
    spec: TemplatePodSpec | None = Field(default=None, description="Pod fields, merged over the operator's defaults.")


def _duplicate(names: Iterator[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def unique_mounts(mounts: Sequence[VolumeMount] | None) -> Sequence[VolumeMount] | None:
    """A stage's volumeMounts, each mountPath once (as the Pod API wants)."""
    duplicate = _duplicate(m.mount_path for m in mounts or [])
    if duplicate is not None:
        raise ValueError(f"mountPath must be unique: {duplicate!r} appears twice")
    return mounts


def template_volumes(template: PodTemplate | None) -> list[Volume]:
    return list(template.spec.volumes or []) if template is not None and template.spec is not None else []


# -- rules on the whole spec (ProcessingJobSpec): written as CEL and, with the same messages, in Python


def _volumes(template: str, test: str) -> str:
    """CEL: some volume `v` of a podTemplate (`self.podTemplate`, `s.podTemplate`) passes `test`. Written with
    has() rather than optionals, whose orValue([]) loses the lists' maxItems and so their cost bound."""
    return (
        f"(has({template}) && has({template}.spec) && has({template}.spec.volumes) && "
        f"{template}.spec.volumes.exists(v, {test}))"
    )


_DECLARED = f"({_volumes('s.podTemplate', 'v.name == m.name')} || {_volumes('self.podTemplate', 'v.name == m.name')})"
_PROJECTS_TOKEN = "has(v.projected) && v.projected.sources.exists(p, has(p.serviceAccountToken))"  # noqa: S105


def spec_rules() -> list[dict[str, str]]:
    """CEL on ProcessingJobSpec: podTemplate is immutable, mounts name declared volumes, tokens need an account."""
    return [
        {
            "rule": "has(self.podTemplate) == has(oldSelf.podTemplate) && "
            "(!has(self.podTemplate) || self.podTemplate == oldSelf.podTemplate)",
            "message": "podTemplate is immutable",
            "fieldPath": ".podTemplate",
        },
        {
            "rule": f"self.stages.all(s, !has(s.volumeMounts) || s.volumeMounts.all(m, {_DECLARED}))",
            "message": MOUNT_UNDECLARED,
            "fieldPath": ".stages",
        },
        {
            "rule": f"has(self.serviceAccountName) || (!{_volumes('self.podTemplate', _PROJECTS_TOKEN)} && "
            f"!self.stages.exists(s, {_volumes('s.podTemplate', _PROJECTS_TOKEN)}))",
            "message": PROJECTION_NEEDS_ACCOUNT,
            "fieldPath": ".serviceAccountName",
        },
    ]


def spec_problem(spec: ProcessingJobSpec) -> str | None:
    """`spec_rules` in Python (immutability aside: the API server alone sees the old object)."""
    job_volumes = template_volumes(spec.pod_template)
    for index, stage in enumerate(spec.stages):
        declared = {v.name for v in [*job_volumes, *template_volumes(stage.pod_template)]}
        for number, mount in enumerate(stage.volume_mounts or []):
            if mount.name not in declared:
                return f"{MOUNT_UNDECLARED}: stages[{index}].volumeMounts[{number}].name is {mount.name!r}"
    if spec.service_account_name is None:
        volumes = [*job_volumes, *(v for stage in spec.stages for v in template_volumes(stage.pod_template))]
        if any(volume.has_token() for volume in volumes):
            return PROJECTION_NEEDS_ACCOUNT
    return None
