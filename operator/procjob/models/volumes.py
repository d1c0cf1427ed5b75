"""The volumes a job may declare and its stages mount, shaped and named as in corev1.

Only the volume types of the Pod Security Standards' restricted profile that need no node access:
configMap, secret, emptyDir, persistentVolumeClaim, ephemeral and projected (serviceAccountToken,
configMap, secret, downwardAPI). A volume of any other type (hostPath, nfs, csi, …) is refused by
the schema: with kubectl's strict field validation as an unknown field, and, should a client have
it pruned, as a volume without a source. Names under `procjob-` and the paths the operator mounts
itself (the termination message file, the service-account token) are reserved.
"""

from __future__ import annotations

from typing import Annotated, Literal, cast

from pydantic import Field, model_validator

from procjob.models.base import ApiModel
from procjob.models.container import PodMetadata, Quantity, cel_rules
from procjob.models.contract import (
    RESERVED_VOLUME_PREFIX,
    SERVICE_ACCOUNT_TOKEN_PATH,
    TERMINATION_MESSAGE_PATH,
    WORKER_CONTAINER,
    WorkerContainer,
)
from procjob.models.scheduling import LabelSelector
from procjob.models.syntax import ABSOLUTE_PATH, DNS_LABEL, DNS_SUBDOMAIN, RELATIVE_PATH, ConfigKey, Name

Mode = Annotated[int, Field(ge=0, le=0o777)]
RelativePath = Annotated[str, Field(min_length=1, max_length=1024, pattern=RELATIVE_PATH)]
VolumeName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]

VOLUME_TYPES = ("configMap", "secret", "emptyDir", "persistentVolumeClaim", "ephemeral", "projected")
PROJECTION_TYPES = ("serviceAccountToken", "configMap", "secret", "downwardAPI")
ONE_VOLUME_TYPE = (
    f"a volume needs exactly one of {', '.join(VOLUME_TYPES)}; other volume types (hostPath, nfs, csi, …) are "
    "not allowed"
)
ONE_PROJECTION = f"a projection needs exactly one of {', '.join(PROJECTION_TYPES)}"
ONE_DOWNWARD_SOURCE = "set exactly one of fieldRef or resourceFieldRef"
RESERVED_VOLUME = f"volume names starting with {RESERVED_VOLUME_PREFIX} are reserved for the operator"
HIDES_TERMINATION_LOG = f"mountPath must not hide {TERMINATION_MESSAGE_PATH}, where the stage writes its outputs"
HIDES_TOKEN = f"mountPath must not be at or under {SERVICE_ACCOUNT_TOKEN_PATH}, the operator's service-account token"


def _exactly_one(fields: tuple[str, ...]) -> str:
    """CEL: exactly one of these fields is set."""
    return " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " == 1"


def _count_set(model: ApiModel) -> int:
    return sum(getattr(model, name) is not None for name in type(model).model_fields)


class KeyToPath(ApiModel):
    """Projects one key to a file."""

    key: ConfigKey = Field(description="The key.")
    path: RelativePath = Field(description="Relative path of the file; no '..'.")
    mode: Mode | None = Field(default=None, description="File mode bits, 0-0777 (decimal in JSON: 0644 is 420).")


Items = Annotated[list[KeyToPath], Field(max_length=64)]


class ConfigMapVolumeSource(ApiModel):
    """A ConfigMap's keys as files."""

    name: Name = Field(description="The ConfigMap, in the job's namespace.")
    items: Items | None = Field(default=None, description="Keys to project; unset: every key, as a file of its name.")
    default_mode: Mode | None = Field(default=None, description="Mode of the files (default 0644).")
    optional: bool | None = Field(default=None, description="Start even if the ConfigMap or a key is missing.")


class SecretVolumeSource(ApiModel):
    """A Secret's keys as files."""

    secret_name: Name = Field(description="The Secret, in the job's namespace.")
    items: Items | None = Field(default=None, description="Keys to project; unset: every key, as a file of its name.")
    default_mode: Mode | None = Field(default=None, description="Mode of the files (default 0644).")
    optional: bool | None = Field(default=None, description="Start even if the Secret or a key is missing.")


class EmptyDirVolumeSource(ApiModel):
    """A directory that lives as long as the pod (one attempt)."""

    medium: Literal["", "Memory"] | None = Field(default=None, description="'' (the node's disk) or Memory (tmpfs).")
    size_limit: Quantity | None = Field(default=None, description="Largest size, e.g. 1Gi; the pod is evicted above.")


class PersistentVolumeClaimVolumeSource(ApiModel):
    """A PersistentVolumeClaim of the job's namespace."""

    claim_name: Name = Field(description="The claim's name.")
    read_only: bool | None = Field(default=None, description="Mount it read-only.")


class StorageAmount(ApiModel):
    """An amount of storage."""

    storage: Quantity = Field(description="E.g. 10Gi.")


class VolumeResourceRequirements(ApiModel):
    """The storage a claim asks for."""

    requests: StorageAmount = Field(description="Minimum storage.")
    limits: StorageAmount | None = Field(default=None, description="Maximum storage.")


class TypedLocalObjectReference(ApiModel):
    """An object of the job's namespace to populate the volume from, e.g. a VolumeSnapshot."""

    api_group: Annotated[str, Field(max_length=253, pattern=f"^{DNS_SUBDOMAIN}$")] | None = Field(
        default=None, description="Its API group, e.g. snapshot.storage.k8s.io; unset: the core group."
    )
    kind: Annotated[str, Field(min_length=1, max_length=63, pattern="^[A-Za-z][A-Za-z0-9]*$")] = Field(
        description="Its kind, e.g. VolumeSnapshot or PersistentVolumeClaim."
    )
    name: Name = Field(description="Its name.")


class PersistentVolumeClaimSpec(ApiModel):
    """The claim an ephemeral volume creates for each pod."""

    access_modes: list[Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]] = Field(
        min_length=1, max_length=4, description="ReadWriteOnce, ReadOnlyMany, ReadWriteMany or ReadWriteOncePod."
    )
    resources: VolumeResourceRequirements = Field(description="The storage asked for.")
    storage_class_name: Annotated[str, Field(max_length=253, pattern=f"^({DNS_SUBDOMAIN})?$")] | None = Field(
        default=None, description="The StorageClass; unset: the cluster's default; '': none (a pre-made volume)."
    )
    selector: LabelSelector | None = Field(default=None, description="Labels of the volumes to bind to.")
    volume_mode: Literal["Filesystem"] | None = Field(
        default=None, description="Only Filesystem: stages mount volumes, they do not take block devices."
    )
    data_source: TypedLocalObjectReference | None = Field(
        default=None, description="Populate the volume from this object, e.g. a VolumeSnapshot."
    )


class PersistentVolumeClaimTemplate(ApiModel):
    """The claim created for each pod, named <pod>-<volume>, deleted with the pod."""

    metadata: PodMetadata | None = Field(default=None, description="Labels and annotations of the claim.")
    spec: PersistentVolumeClaimSpec = Field(description="The claim's spec.")


class EphemeralVolumeSource(ApiModel):
    """A volume from a PersistentVolumeClaim created for each pod and deleted with it."""

    volume_claim_template: PersistentVolumeClaimTemplate = Field(description="The claim to create.")


class ServiceAccountTokenProjection(ApiModel):
    """A token of the pod's service account, for an audience. Needs spec.serviceAccountName: without
    it the pod runs as the namespace's default account, whose token the operator never hands out."""

    audience: Annotated[str, Field(max_length=1024)] | None = Field(
        default=None, description="Who the token is for (default: the API server)."
    )
    expiration_seconds: int | None = Field(
        default=None, ge=600, le=4294967296, description="Requested lifetime, at least 600 (default 3600)."
    )
    path: RelativePath = Field(description="File the token is written to.")


class ConfigMapProjection(ApiModel):
    """A ConfigMap's keys as files of a projected volume."""

    name: Name = Field(description="The ConfigMap, in the job's namespace.")
    items: Items | None = Field(default=None, description="Keys to project; unset: every key.")
    optional: bool | None = Field(default=None, description="Start even if it is missing.")


class SecretProjection(ApiModel):
    """A Secret's keys as files of a projected volume."""

    name: Name = Field(description="The Secret, in the job's namespace.")
    items: Items | None = Field(default=None, description="Keys to project; unset: every key.")
    optional: bool | None = Field(default=None, description="Start even if it is missing.")


class ObjectFieldSelector(ApiModel):
    """A field of the pod."""

    api_version: Literal["v1"] | None = Field(default=None, description="v1.")
    field_path: Annotated[
        str,
        Field(
            max_length=512,
            pattern=r"^metadata[.](name|namespace|uid|labels|annotations|(labels|annotations)\['[-A-Za-z0-9_./]+'\])$",
        ),
    ] = Field(description="metadata.name, .namespace, .uid, .labels, .annotations, or .labels['KEY'].")


class ResourceFieldSelector(ApiModel):
    """A request or limit of the stage's container."""

    container_name: WorkerContainer = Field(
        default=cast("WorkerContainer", WORKER_CONTAINER),
        description=f"The stage's container, {WORKER_CONTAINER!r} (the default).",
    )
    resource: Literal[
        "limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu", "requests.memory",
        "requests.ephemeral-storage",
    ] = Field(description="E.g. limits.memory.")  # fmt: skip
    divisor: Quantity | None = Field(default=None, description="Unit of the value written, e.g. 1Mi (default 1).")


class DownwardAPIVolumeFile(ApiModel):
    """A file holding a field of the pod or a resource of its container."""

    model_config = cel_rules([{"rule": _exactly_one(("fieldRef", "resourceFieldRef")), "message": ONE_DOWNWARD_SOURCE}])

    path: RelativePath = Field(description="Relative path of the file.")
    field_ref: ObjectFieldSelector | None = Field(default=None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(default=None, description="A resource of the container.")
    mode: Mode | None = Field(default=None, description="File mode bits, 0-0777.")

    @model_validator(mode="after")
    def _one_source(self) -> DownwardAPIVolumeFile:
        if (self.field_ref is None) == (self.resource_field_ref is None):
            raise ValueError(ONE_DOWNWARD_SOURCE)
        return self


class DownwardAPIProjection(ApiModel):
    """Fields of the pod as files of a projected volume."""

    items: list[DownwardAPIVolumeFile] | None = Field(default=None, max_length=32, description="The files.")


class VolumeProjection(ApiModel):
    """One source of a projected volume."""

    model_config = cel_rules([{"rule": _exactly_one(PROJECTION_TYPES), "message": ONE_PROJECTION}])

    service_account_token: ServiceAccountTokenProjection | None = Field(
        default=None, description="A token of the job's service account (needs spec.serviceAccountName)."
    )
    config_map: ConfigMapProjection | None = Field(default=None, description="A ConfigMap's keys.")
    secret: SecretProjection | None = Field(default=None, description="A Secret's keys.")
    downward_api: DownwardAPIProjection | None = Field(
        default=None, alias="downwardAPI", description="Fields of the pod."
    )

    @model_validator(mode="after")
    def _one(self) -> VolumeProjection:
        if _count_set(self) != 1:
            raise ValueError(ONE_PROJECTION)
        return self


class ProjectedVolumeSource(ApiModel):
    """Several sources in one directory."""

    sources: list[VolumeProjection] = Field(min_length=1, max_length=16, description="The sources.")
    default_mode: Mode | None = Field(default=None, description="Mode of the files (default 0644).")


class Volume(ApiModel):
    """A volume of the pod, by name, with exactly one source."""

    model_config = cel_rules(
        [
            {"rule": _exactly_one(VOLUME_TYPES), "message": ONE_VOLUME_TYPE},
            {
                "rule": f"!self.name.startsWith('{RESERVED_VOLUME_PREFIX}')",
                "message": RESERVED_VOLUME,
                "fieldPath": ".name",
            },
        ]
    )

    name: VolumeName = Field(description="Name (a DNS label) that volumeMounts refer to; not procjob-*.")
    config_map: ConfigMapVolumeSource | None = Field(default=None, description="A ConfigMap's keys as files.")
    secret: SecretVolumeSource | None = Field(default=None, description="A Secret's keys as files.")
    empty_dir: EmptyDirVolumeSource | None = Field(default=None, description="A scratch directory of the attempt.")
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = Field(
        default=None, description="A PersistentVolumeClaim of the job's namespace."
    )
    ephemeral: EphemeralVolumeSource | None = Field(
        default=None, description="A PersistentVolumeClaim created for each pod."
    )
    projected: ProjectedVolumeSource | None = Field(
        default=None, description="serviceAccountToken, configMap, secret and downwardAPI sources in one directory."
    )

    @model_validator(mode="after")
    def _one_type(self) -> Volume:
        if _count_set(self) != 2:  # the name and one source
            raise ValueError(ONE_VOLUME_TYPE)
        if self.name.startswith(RESERVED_VOLUME_PREFIX):
            raise ValueError(RESERVED_VOLUME)
        return self

    def has_token(self) -> bool:
        """Whether it projects a service-account token."""
        sources = self.projected.sources if self.projected is not None else []
        return any(source.service_account_token is not None for source in sources)


def _hides(path: str, target: str) -> bool:
    return path == target or target.startswith(path + "/")


class VolumeMount(ApiModel):
    """A volume of the pod (the job's or the stage's podTemplate.spec.volumes) in the stage's container."""

    model_config = cel_rules(
        [
            {
                "rule": f"self.mountPath != '{TERMINATION_MESSAGE_PATH}' && "
                f"!'{TERMINATION_MESSAGE_PATH}'.startsWith(self.mountPath + '/')",
                "message": HIDES_TERMINATION_LOG,
                "fieldPath": ".mountPath",
            },
            {
                "rule": f"self.mountPath != '{SERVICE_ACCOUNT_TOKEN_PATH}' && "
                f"!self.mountPath.startsWith('{SERVICE_ACCOUNT_TOKEN_PATH}/')",
                "message": HIDES_TOKEN,
                "fieldPath": ".mountPath",
            },
        ]
    )

    name: VolumeName = Field(description="The volume's name.")
    mount_path: Annotated[str, Field(min_length=2, max_length=1024, pattern=ABSOLUTE_PATH)] = Field(
        description="Absolute path in the container. A volume at /tmp replaces the operator's /tmp emptyDir."
    )
    sub_path: RelativePath | None = Field(
        default=None, description="Path within the volume to mount instead of its root."
    )
    read_only: bool | None = Field(default=None, description="Mount it read-only.")

    @model_validator(mode="after")
    def _not_reserved(self) -> VolumeMount:
        if _hides(self.mount_path, TERMINATION_MESSAGE_PATH):
            raise ValueError(HIDES_TERMINATION_LOG)
        if _hides(SERVICE_ACCOUNT_TOKEN_PATH, self.mount_path):  # at or under the token's directory
            raise ValueError(HIDES_TOKEN)
        return self
