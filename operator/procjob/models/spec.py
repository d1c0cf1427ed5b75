"""`ProcessingJob.spec`: what a platform team declares.

These pydantic models are the source of the CRD's OpenAPI schema (`procjob crd`): descriptions
become `kubectl explain` text, `Field` bounds become `minimum`/`maxItems`/`maxLength`, and the
`x-kubernetes-validations` given in `json_schema_extra` become CEL rules the API server enforces
before the operator ever sees an object. The same models parse objects in the operator, so an
object stored under an older, looser schema is still caught, with an error naming the field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

from procjob.models.base import ApiModel
from procjob.models.container import (
    EnvFromSource,
    EnvVar,
    EnvVarSource,
    KeyRef,
    LocalRef,
    PodMetadata,
    Resources,
    cel_rules,
)
from procjob.models.fanout import (
    FANOUT_FIELDS,
    MAX_FANOUT_STAGES,
    MAX_PARALLELISM,
    TOO_MANY_FANOUTS,
    FailureMode,
    FailurePolicy,
    for_each_problem,
    for_each_schema,
)
from procjob.models.flow import (
    DEPENDS_ON_SELF,
    FINALLY_DEADLINE_SECONDS,
    MAX_FINALLY,
    MAX_FINALLY_DEADLINE_SECONDS,
    depends_on_problem,
    finally_names_problem,
    flow_rules,
)
from procjob.models.podtemplate import MAX_MOUNTS, PodTemplate, list_map, spec_problem, spec_rules, unique_mounts
from procjob.models.retry import Backoff, FailureReason, RetryAction, RetryPolicy, RetryRule
from procjob.models.security import SecurityContext
from procjob.models.syntax import (
    CEL,
    DNS_LABEL,
    ENV_NAME,
    MAX_RULES,
    MAX_STAGE_NAME,
    MAX_STAGES,
    MAX_WITH_KEYS,
    USES_ENV_FROM,
    USES_ENV_RESERVED,
    USES_RESERVED_ENV_PREFIXES,
    Str,
    uses_env_rules,
    with_problem,
    with_schema,
)
from procjob.models.volumes import VolumeMount


class PodGC(StrEnum):
    """When finished worker pods are deleted (the job itself keeps its status)."""

    NEVER = "Never"
    ON_SUCCESS = "OnSuccess"
    ON_COMPLETION = "OnCompletion"


StageName = Annotated[str, Field(min_length=1, max_length=MAX_STAGE_NAME, pattern=DNS_LABEL)]


class Stage(ApiModel):
    """One step of the job: a container image, or a built-in worker stage (`uses`)."""

    model_config = cel_rules(
        [
            {"rule": "has(self.image) != has(self.uses)", "message": "set exactly one of image or uses"},
            {"rule": "!has(self.dependsOn) || !(self.name in self.dependsOn)", "message": DEPENDS_ON_SELF},
            *uses_env_rules(),
        ]
    )

    name: StageName = Field(description="Stage name: a DNS label, unique within the job; part of pod names.")
    image: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^\S(.*\S)?$")] | None = Field(
        default=None, description="Container image that runs the stage."
    )
    uses: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)] | None = Field(
        default=None, description="A built-in worker stage run by the operator's worker image, e.g. fetch."
    )
    depends_on: list[StageName] | None = Field(
        default=None,
        max_length=MAX_STAGES,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Stages that must succeed before this one starts. Unset: the stage listed before it (none "
        "for the first), so stages without dependsOn run in order. []: starts when the job starts. A stage of "
        "spec.finally names stages of spec.finally.",
    )
    for_each: Annotated[Any, WithJsonSchema(for_each_schema())] | None = Field(
        default=None,
        alias="forEach",
        description="Run the stage once per item, each item its own chain of attempts, with {{ item }} and "
        "{{ item.FIELD }} in its templates: a list (at most 10000 items: strings, numbers, booleans, or objects of "
        "at most 16 of them), or a template naming a list output of an upstream stage, e.g. "
        '"{{ stages.list.outputs.keys }}". Outputs: each key\'s values in item order.',
    )
    parallelism: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PARALLELISM,
        description="With forEach: items in flight at once (running, or waiting for their retry); unset: 1.",
    )
    failure_policy: FailurePolicy | None = Field(
        default=None, description="With forEach: how many items may fail for good, and when the stage fails."
    )
    with_: Annotated[dict[str, Any], WithJsonSchema(with_schema())] | None = Field(
        default=None,
        alias="with",
        max_length=MAX_WITH_KEYS,
        description="Parameters of a built-in stage; string values may use {{ templates }}. Each value is a "
        "scalar, a list of scalars, or an object of scalars and lists of scalars; at most 16 KiB as JSON.",
    )
    command: list[Str] | None = Field(default=None, max_length=64, description="Entrypoint; templates expanded.")
    args: list[Str] | None = Field(default=None, max_length=256, description="Arguments; templates expanded.")
    env: list[EnvVar] | None = Field(
        default=None, max_length=128, description="Environment variables; the operator's own (PROCJOB_*) win."
    )
    env_from: list[EnvFromSource] | None = Field(default=None, max_length=16, description="Bulk env sources.")
    working_dir: Annotated[str, Field(max_length=1024)] | None = Field(default=None, description="Working directory.")
    image_pull_policy: Annotated[str, Field(pattern="^(Always|IfNotPresent|Never)$")] | None = Field(
        default=None, description="Always, IfNotPresent or Never."
    )
    resources: Resources | None = Field(
        default=None, description="Requests and limits, checked as the Pod API checks them (requests <= limits)."
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=604800,
        description="Limit on one attempt's running time; then DeadlineExceeded.",
    )
    startup_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description="Limit on an attempt's time Pending (unschedulable, image pull errors); then StartupTimeout.",
    )
    retry: RetryPolicy | None = Field(default=None, description="Overrides the job's retry policy field by field.")
    pod_metadata: PodMetadata | None = Field(
        default=None,
        description="Extra labels and annotations for pods. procjob.dev/ keys are reserved; kubernetes.io and "
        "k8s.io keys only under prefixes the operator allows (--allowed-metadata-prefixes). The same as "
        "podTemplate.metadata, which wins where both set a key.",
    )
    pod_template: PodTemplate | None = Field(
        default=None, description="Merged over the job's podTemplate: maps key by key, volumes by name, the rest whole."
    )
    volume_mounts: list[VolumeMount] | None = Field(
        default=None,
        max_length=MAX_MOUNTS,
        json_schema_extra=list_map("mountPath"),
        description="Volumes of the job's or the stage's podTemplate.spec.volumes to mount in the stage's container.",
    )
    security_context: SecurityContext | None = Field(
        default=None,
        description="The container's, merged over the operator's: no privilege escalation, read-only root "
        "filesystem, all capabilities dropped.",
    )

    @model_validator(mode="after")
    def _image_or_uses(self) -> Stage:
        if (self.image is None) == (self.uses is None):
            raise ValueError("set exactly one of image or uses")
        if self.name in (self.depends_on or []):
            raise ValueError(DEPENDS_ON_SELF)
        if (self.parallelism is not None or self.failure_policy is not None) and self.for_each is None:
            raise ValueError(FANOUT_FIELDS)
        if self.with_ is not None and self.uses is None:
            raise ValueError("with is for built-in stages (uses)")
        return self

    @field_validator("for_each")
    @classmethod
    def _items(cls, value: Any) -> Any:
        problem = None if value is None else for_each_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def fanned(self) -> bool:
        """Whether the stage runs once per item (forEach)."""
        return self.for_each is not None

    @property
    def policy(self) -> FailurePolicy:
        return self.failure_policy or FailurePolicy()

    @field_validator("volume_mounts")
    @classmethod
    def _unique_mounts(cls, mounts: list[VolumeMount] | None) -> list[VolumeMount] | None:
        unique_mounts(mounts)
        return mounts

    @field_validator("with_")
    @classmethod
    def _bounded_with(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Shape and size of `with`, checked without recursion (a CRD cannot see inside free-form data)."""
        problem = with_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _uses_env(self) -> Stage:
        """A built-in stage's S3 client and worker read AWS_* and PROCJOB_*: the job author sets neither."""
        if self.uses is None:
            return self
        if any(var.name.startswith(USES_RESERVED_ENV_PREFIXES) for var in self.env or []):
            raise ValueError(USES_ENV_RESERVED)
        if any(source.may_make(p) for source in self.env_from or [] for p in USES_RESERVED_ENV_PREFIXES):
            raise ValueError(USES_ENV_FROM)
        return self


def _finally_rules() -> list[dict[str, str]]:
    """spec_rules' checks of every stage (mounts name declared volumes, a projected token needs an account),
    the same CEL and message applied to spec.finally."""
    return [
        {**rule, "rule": f"!has(self.finally) || {rule['rule'].replace('self.stages', 'self.finally')}"}
        | ({"fieldPath": ".finally"} if rule.get("fieldPath") == ".stages" else {})
        for rule in spec_rules()
        if "self.stages" in rule["rule"]
    ]


class ProcessingJobSpec(ApiModel):
    """The desired run: stages (a chain, or a graph through dependsOn) and finally stages, a retry policy,
    deadlines, and run controls."""

    model_config = cel_rules(
        [
            {
                "rule": "self.stages.all(s, self.stages.exists_one(t, t.name == s.name))",
                "message": "stage names must be unique",
                "fieldPath": ".stages",
            },
            {
                "rule": "self.stages == oldSelf.stages",
                "message": "stages are immutable",
                "fieldPath": ".stages",
            },
            {
                "rule": "has(self.retry) == has(oldSelf.retry) && (!has(self.retry) || self.retry == oldSelf.retry)",
                "message": "retry is immutable",
                "fieldPath": ".retry",
            },
            {
                "rule": "has(self.activeDeadlineSeconds) == has(oldSelf.activeDeadlineSeconds) && "
                "(!has(self.activeDeadlineSeconds) || self.activeDeadlineSeconds == oldSelf.activeDeadlineSeconds)",
                "message": "activeDeadlineSeconds is immutable",
                "fieldPath": ".activeDeadlineSeconds",
            },
            {
                "rule": "self.podGC == oldSelf.podGC",
                "message": "podGC is immutable",
                "fieldPath": ".podGC",
            },
            {
                "rule": "has(self.serviceAccountName) == has(oldSelf.serviceAccountName) && "
                "(!has(self.serviceAccountName) || self.serviceAccountName == oldSelf.serviceAccountName)",
                "message": "serviceAccountName is immutable",
                "fieldPath": ".serviceAccountName",
            },
            {
                "rule": "!oldSelf.cancel || self.cancel",
                "message": "cancel cannot be undone",
                "fieldPath": ".cancel",
            },
            *spec_rules(),
            *_finally_rules(),
            *flow_rules(),
        ]
    )

    stages: list[Stage] = Field(
        min_length=1,
        max_length=MAX_STAGES,
        description="Stages: each starts once the stages it dependsOn have succeeded (unset: the one before it, "
        "so by default they run in order); independent stages run at the same time.",
    )
    finally_: list[Stage] | None = Field(
        default=None,
        alias="finally",
        max_length=MAX_FINALLY,
        description="Stages run after the stages have ended, whatever the outcome (succeeded, failed, cancelled "
        "or past the deadline), with {{ job.status }} and {{ job.reason }}. Their failure is reported; a failed "
        "job stays failed, a succeeded one fails with reason FinallyFailed.",
    )
    finally_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_FINALLY_DEADLINE_SECONDS,
        description=f"Limit on the finally stages, from when they start; unset: {FINALLY_DEADLINE_SECONDS}. "
        "activeDeadlineSeconds does not apply to them.",
    )
    retry: RetryPolicy | None = Field(default=None, description="Default retry policy of every stage.")
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first while jobs are queued.")
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=2592000,
        description="Limit on the whole job (all attempts and waits, from its start); then DeadlineExceeded. "
        "A retry whose wait would end past it fails the job at once.",
    )
    suspend: bool = Field(default=False, description="True: no new pods; a running attempt is stopped, not charged.")
    cancel: bool = Field(default=False, description="True: the job ends Cancelled; its pods are deleted.")
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=31536000,
        description="Delete the job this many seconds after it finished (as batch/v1 Job does); the audit "
        "database keeps its record. Unset: the operator's default (--ttl-seconds-after-finished), if any.",
    )
    pod_gc: PodGC = Field(
        default=PodGC.ON_SUCCESS,
        alias="podGC",
        description="When finished pods are deleted: Never, OnSuccess (when the job succeeds) or OnCompletion.",
    )
    service_account_name: Annotated[str, Field(max_length=253, pattern=DNS_LABEL)] | None = Field(
        default=None,
        description="Service account of the worker pods; must be one the operator allows. Unset: none, "
        "and no token is mounted.",
    )
    pod_template: PodTemplate | None = Field(
        default=None,
        description="Labels, annotations and Pod fields (nodeSelector, tolerations, affinity, volumes, "
        "securityContext…) of every stage's pods; a stage's podTemplate is merged over it.",
    )

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[Stage]) -> list[Stage]:
        """A field validator, so that the error names `spec.stages` (as the CEL rule's fieldPath does)."""
        seen: set[str] = set()
        for stage in stages:
            if stage.name in seen:
                raise ValueError(f"stage names must be unique: {stage.name!r} appears twice")
            seen.add(stage.name)
        problem = depends_on_problem(stages, "stages")
        if problem:
            raise ValueError(problem)
        return stages

    @field_validator("finally_")
    @classmethod
    def _finally_names(cls, final: list[Stage] | None, info: ValidationInfo) -> list[Stage] | None:
        """Named `spec.finally`, as the CEL rules' fieldPath is (stages, listed before, are validated first)."""
        problem = depends_on_problem(final or [], "finally") or finally_names_problem(
            info.data.get("stages") or [], final or []
        )
        if problem:
            raise ValueError(problem)
        return final

    @model_validator(mode="after")
    def _volumes_and_tokens(self) -> ProcessingJobSpec:
        problem = spec_problem(self)
        if sum(s.fanned for s in self.all_stages) > MAX_FANOUT_STAGES:
            problem = TOO_MANY_FANOUTS
        if problem is None and self.finally_:
            found = spec_problem(self.model_copy(update={"stages": self.finally_, "finally_": None}))
            problem = found.replace("stages[", "finally[") if found else None
        if problem:
            raise ValueError(problem)
        return self

    @property
    def all_stages(self) -> list[Stage]:
        """The stages, then the finally stages: the order of status.stages."""
        return [*self.stages, *(self.finally_ or [])]

    def stage_path(self, index: int) -> str:
        """The field path of `all_stages[index]`, e.g. spec.stages[1] or spec.finally[0]."""
        main = len(self.stages)
        return f"spec.stages[{index}]" if index < main else f"spec.finally[{index - main}]"

    @property
    def finally_deadline(self) -> int:
        return self.finally_deadline_seconds or FINALLY_DEADLINE_SECONDS


__all__ = [
    "CEL",
    "DNS_LABEL",
    "ENV_NAME",
    "MAX_FINALLY",
    "MAX_RULES",
    "MAX_STAGES",
    "MAX_STAGE_NAME",
    "Backoff",
    "EnvFromSource",
    "EnvVar",
    "EnvVarSource",
    "FailureMode",
    "FailurePolicy",
    "FailureReason",
    "KeyRef",
    "LocalRef",
    "PodGC",
    "PodMetadata",
    "PodTemplate",
    "ProcessingJobSpec",
    "Resources",
    "RetryAction",
    "RetryPolicy",
    "RetryRule",
    "Stage",
    "StageName",
]
