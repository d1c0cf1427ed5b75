"""`ProcessingJob.spec`: what a platform team declares.

These pydantic models are the source of the CRD's OpenAPI schema (`procjob crd`): descriptions
become `kubectl explain` text, `Field` bounds become `minimum`/`maxItems`/`maxLength`, and the
`x-kubernetes-validations` given in `json_schema_extra` become CEL rules the API server enforces
before the operator ever sees an object. The same models parse objects in the operator, so an
object stored under an older, looser schema is still caught, with an error naming the field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, cast

from pydantic import ConfigDict, Field, JsonValue, ValidationInfo, WithJsonSchema, field_validator, model_validator

from procjob.models.base import ApiModel
from procjob.models.syntax import (
    DNS_SUBDOMAIN,
    LABEL_VALUE,
    MAX_WITH_KEYS,
    QUANTITY,
    RESERVED_ENV_PREFIX,
    USES_ENV_FROM,
    USES_ENV_RESERVED,
    USES_RESERVED_ENV_PREFIXES,
    cel_requests_fit_limits,
    metadata_problem,
    metadata_rules,
    requests_problem,
    resource_problem,
    resource_rules,
    uses_env_rules,
    with_problem,
    with_schema,
)

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
MAX_STAGES = 32
MAX_RULES = 16
MAX_STAGE_NAME = 40

CEL = "x-kubernetes-validations"
ENV_RESERVED = f"names starting with {RESERVED_ENV_PREFIX} are reserved for the operator"
PREFIX_RESERVED = f"an envFrom prefix starting with {RESERVED_ENV_PREFIX} is reserved for the operator"

Str = Annotated[str, Field(max_length=4096)]
# A Secret or ConfigMap name (a DNS subdomain) and a key in it, as the Pod API checks them.
Name = Annotated[str, Field(min_length=1, max_length=253, pattern=f"^{DNS_SUBDOMAIN}$")]
ConfigKey = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]


class RetryAction(StrEnum):
    """What a matching retry rule does with a failed attempt."""

    RETRY = "Retry"  # retry, charged to the retry limit
    FAIL_JOB = "FailJob"  # permanent: the job fails now
    IGNORE = "Ignore"  # retry without charging the limit (disruptions)


class FailureReason(StrEnum):
    """Why an attempt failed, as classified from its pod. Rules match these."""

    ERROR = "Error"  # the container exited non-zero
    OOM_KILLED = "OOMKilled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # the attempt ran past timeoutSeconds
    STARTUP_TIMEOUT = "StartupTimeout"  # Pending (image pull, unschedulable) past startupTimeoutSeconds
    EVICTED = "Evicted"  # the kubelet or the Eviction API took the pod
    DISRUPTION = "Disruption"  # DisruptionTarget condition: preemption, taint manager, node loss
    POD_DELETED = "PodDeleted"  # the pod vanished or was deleted by someone else
    CONTAINER_CANNOT_RUN = "ContainerCannotRun"  # CreateContainerError, bad config
    INVALID_OUTPUTS = "InvalidOutputs"  # exit 0, but the termination message is not usable outputs
    POD_REJECTED = "PodRejected"  # the API server refused the attempt's pod (4xx): never retried as is


class PodGC(StrEnum):
    """When finished worker pods are deleted (the job itself keeps its status)."""

    NEVER = "Never"
    ON_SUCCESS = "OnSuccess"
    ON_COMPLETION = "OnCompletion"


class Backoff(ApiModel):
    """Exponential backoff: delay(n) = min(maxSeconds, initialSeconds * factor^(n-1)), then jitter."""

    initial_seconds: int = Field(default=10, ge=0, le=86400, description="Delay before the first retry.")
    factor: float = Field(default=2.0, ge=1.0, le=10.0, description="Growth factor per retry (>= 1).")
    max_seconds: int = Field(default=300, ge=0, le=86400, description="Cap on the computed delay.")
    jitter: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Adds up to this fraction of the delay, derived deterministically from the job UID, "
        "stage and attempt, so that a restart computes the same wait. Never shortens the delay.",
    )


class RetryRule(ApiModel):
    """Matches a failed attempt by exit code and/or reason; the first matching rule decides."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "has(self.onExitCodes) || has(self.onReasons)",
                    "message": "a rule needs onExitCodes or onReasons",
                }
            ]
        }
    }

    on_exit_codes: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(
        default=None, min_length=1, max_length=32, description="Matches when the exit code is one of these."
    )
    on_reasons: list[FailureReason] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="Matches when the failure reason is one of these.",
    )
    action: RetryAction = Field(description="Retry (charged), FailJob (no retry), or Ignore (retry, not charged).")

    @model_validator(mode="after")
    def _needs_a_matcher(self) -> RetryRule:
        if self.on_exit_codes is None and self.on_reasons is None:
            raise ValueError("a rule needs onExitCodes or onReasons")
        return self


class RetryPolicy(ApiModel):
    """How failed attempts are retried. On a stage, each field set here overrides the job's."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "!(has(self.backoff) && has(self.delaysSeconds))",
                    "message": "set backoff or delaysSeconds, not both",
                }
            ]
        }
    }

    limit: int | None = Field(
        default=None, ge=0, le=50, description="Retries after the first attempt (default 3; 0 = never retry)."
    )
    backoff: Backoff | None = Field(default=None, description="Exponential backoff between attempts.")
    delays_seconds: list[Annotated[int, Field(ge=0, le=86400)]] | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="Explicit waits before retry 1, 2, 3...; the last one repeats. E.g. [1, 4, 8].",
    )
    rules: list[RetryRule] | None = Field(
        default=None,
        max_length=MAX_RULES,
        description="Ordered failure rules; the first match wins; no match means Retry. When unset: exit "
        "code 2 (the worker contract's permanent failure) fails the job; Evicted and Disruption are "
        "retried without charge.",
    )

    @model_validator(mode="after")
    def _one_schedule(self) -> RetryPolicy:
        if self.backoff is not None and self.delays_seconds is not None:
            raise ValueError("set backoff or delaysSeconds, not both")
        return self


class KeyRef(ApiModel):
    """A key of a Secret or ConfigMap in the job's namespace."""

    name: Name = Field(description="The Secret or ConfigMap name.")
    key: ConfigKey = Field(description="The key within it.")
    optional: bool | None = Field(default=None, description="Start even if it is missing.")


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                    "message": "set exactly one of secretKeyRef or configMapKeyRef",
                }
            ]
        }
    }

    secret_key_ref: KeyRef | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeyRef | None = Field(default=None, description="A key of a ConfigMap.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("set exactly one of secretKeyRef or configMapKeyRef")
        return self


class EnvVar(ApiModel):
    """An environment variable of the stage's container; `value` may use {{ templates }}."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {"rule": "!(has(self.value) && has(self.valueFrom))", "message": "set value or valueFrom"},
                {
                    "rule": f"!self.name.startsWith('{RESERVED_ENV_PREFIX}')",
                    "message": ENV_RESERVED,
                    "fieldPath": ".name",
                },
            ]
        }
    }

    name: Annotated[str, Field(min_length=1, max_length=256, pattern=ENV_NAME)] = Field(
        description="Variable name. PROCJOB_* names are the operator's; on a built-in (uses) stage AWS_* too."
    )
    value: Str | None = Field(default=None, description="Literal value; {{ templates }} are expanded.")
    value_from: EnvVarSource | None = Field(default=None, description="Value from a Secret or ConfigMap.")

    @model_validator(mode="after")
    def _value_or_from(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError("set value or valueFrom")
        return self

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(ENV_RESERVED)
        return name


class LocalRef(ApiModel):
    """A Secret or ConfigMap in the job's namespace."""

    name: Name = Field(description="Its name.")
    optional: bool | None = Field(default=None, description="Start even if it is missing.")


class EnvFromSource(ApiModel):
    """All keys of a Secret or ConfigMap as environment variables."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "has(self.secretRef) != has(self.configMapRef)",
                    "message": "set exactly one of secretRef or configMapRef",
                },
                {
                    "rule": f"!has(self.prefix) || !self.prefix.startsWith('{RESERVED_ENV_PREFIX}')",
                    "message": PREFIX_RESERVED,
                    "fieldPath": ".prefix",
                },
            ]
        }
    }

    prefix: Annotated[str, Field(max_length=64, pattern=r"^[ -<>-~]*$")] | None = Field(
        default=None,
        description="Prefix for names (printable ASCII, no '='); not PROCJOB_*. On a built-in (uses) stage "
        "required, and it must not make PROCJOB_* or AWS_* names.",
    )
    secret_ref: LocalRef | None = Field(default=None, description="A Secret.")
    config_map_ref: LocalRef | None = Field(default=None, description="A ConfigMap.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("set exactly one of secretRef or configMapRef")
        return self

    @field_validator("prefix")
    @classmethod
    def _prefix_not_reserved(cls, prefix: str | None) -> str | None:
        if prefix is not None and prefix.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(PREFIX_RESERVED)
        return prefix

    def may_make(self, reserved: str) -> bool:
        """Whether a key of the source could become a variable whose name starts with `reserved` (e.g.
        "PROCJOB_"): with no prefix, a prefix of it ("PROC"), or a prefix that starts with it."""
        prefix = self.prefix or ""
        return reserved.startswith(prefix) or prefix.startswith(reserved)


def _with_rules(rules: list[dict[str, str]]) -> ConfigDict:
    """ApiModel's config with these CEL rules (typed as JSON for pydantic's schema hook)."""
    return ApiModel.model_config | ConfigDict(json_schema_extra={CEL: cast("list[JsonValue]", rules)})


Quantity = Annotated[str, Field(max_length=64, pattern=QUANTITY)]
ResourceName = Annotated[str, Field(max_length=317)]
ResourceMap = dict[ResourceName, Quantity]


class Resources(ApiModel):
    """Compute resources of the stage's container, as in a Pod: quantities like 500m or 256Mi;
    requests at most the limits; hugepages and extended resources need a limit equal to the request."""

    model_config = _with_rules([*resource_rules("requests"), *resource_rules("limits"), *cel_requests_fit_limits()])

    requests: ResourceMap | None = Field(default=None, max_length=16, description="E.g. {cpu: 500m, memory: 256Mi}.")
    limits: ResourceMap | None = Field(default=None, max_length=16, description="E.g. {memory: 512Mi}.")

    @field_validator("requests", "limits")
    @classmethod
    def _names_and_amounts(cls, value: ResourceMap | None) -> ResourceMap | None:
        for name, amount in (value or {}).items():
            problem = resource_problem(name, amount)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _fit(self) -> Resources:
        problem = requests_problem(self.requests or {}, self.limits or {})
        if problem:
            raise ValueError(problem)
        return self


LabelKey = Annotated[str, Field(min_length=1, max_length=317)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]


class PodMetadata(ApiModel):
    """Extra labels and annotations for the stage's pods. Keys are qualified names; keys under
    procjob.dev/ are reserved; keys in the kubernetes.io and k8s.io domains need the operator's leave."""

    model_config = _with_rules(metadata_rules())

    labels: dict[LabelKey, LabelValue] | None = Field(
        default=None, max_length=32, description="Labels added to each pod."
    )
    annotations: dict[LabelKey, Annotated[str, Field(max_length=8192)]] | None = Field(
        default=None, max_length=32, description="Annotations added to each pod (at most 64 KiB in all)."
    )

    @field_validator("labels", "annotations")
    @classmethod
    def _checked(cls, value: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        """A field validator, so that the error names `.labels` or `.annotations` as the CEL rules do."""
        problem = metadata_problem(info.field_name == "labels", value or {})
        if problem:
            raise ValueError(problem)
        return value


class Stage(ApiModel):
    """One step of the job: a container image, or a built-in worker stage (`uses`)."""

    model_config = _with_rules(
        [
            {"rule": "has(self.image) != has(self.uses)", "message": "set exactly one of image or uses"},
            *uses_env_rules(),
        ]
    )

    name: Annotated[str, Field(min_length=1, max_length=MAX_STAGE_NAME, pattern=DNS_LABEL)] = Field(
        description="Stage name: a DNS label, unique within the job; part of pod names."
    )
    image: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^\S(.*\S)?$")] | None = Field(
        default=None, description="Container image that runs the stage."
    )
    uses: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)] | None = Field(
        default=None, description="A built-in worker stage run by the operator's worker image, e.g. fetch."
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
        "k8s.io keys only under prefixes the operator allows (--allowed-metadata-prefixes).",
    )

    @model_validator(mode="after")
    def _image_or_uses(self) -> Stage:
        if (self.image is None) == (self.uses is None):
            raise ValueError("set exactly one of image or uses")
        if self.with_ is not None and self.uses is None:
            raise ValueError("with is for built-in stages (uses)")
        return self

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


class ProcessingJobSpec(ApiModel):
    """The desired run: ordered stages, a retry policy, deadlines, and run controls."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            CEL: [
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
                    "rule": "has(self.retry) == has(oldSelf.retry) && "
                    "(!has(self.retry) || self.retry == oldSelf.retry)",
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
            ]
        }
    }

    stages: list[Stage] = Field(min_length=1, max_length=MAX_STAGES, description="Stages, run in order.")
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

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[Stage]) -> list[Stage]:
        """A field validator, so that the error names `spec.stages` (as the CEL rule's fieldPath does)."""
        seen: set[str] = set()
        for stage in stages:
            if stage.name in seen:
                raise ValueError(f"stage names must be unique: {stage.name!r} appears twice")
            seen.add(stage.name)
        return stages
