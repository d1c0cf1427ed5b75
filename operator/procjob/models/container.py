"""The container fields of a stage — env, envFrom, resources, pod metadata — bounded as the Pod
API bounds them (part of the spec; re-exported by models.spec)."""

from __future__ import annotations

from typing import Annotated, cast

from pydantic import ConfigDict, Field, JsonValue, ValidationInfo, field_validator, model_validator

from procjob.models.base import ApiModel
from procjob.models.syntax import (
    CEL,
    ENV_NAME,
    ENV_RESERVED,
    LABEL_VALUE,
    PREFIX_RESERVED,
    QUANTITY,
    RESERVED_ENV_PREFIX,
    ConfigKey,
    Name,
    Str,
    cel_requests_fit_limits,
    metadata_problem,
    metadata_rules,
    requests_problem,
    resource_problem,
    resource_rules,
)


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


def cel_rules(rules: list[dict[str, str]]) -> ConfigDict:
    """ApiModel's config with these CEL rules (typed as JSON for pydantic's schema hook)."""
    return ApiModel.model_config | ConfigDict(json_schema_extra={CEL: cast("list[JsonValue]", rules)})


Quantity = Annotated[str, Field(max_length=64, pattern=QUANTITY)]
ResourceName = Annotated[str, Field(max_length=317)]
ResourceMap = dict[ResourceName, Quantity]


class Resources(ApiModel):
    """Compute resources of the stage's container, as in a Pod: quantities like 500m or 256Mi;
    requests at most the limits; hugepages and extended resources need a limit equal to the request."""

    model_config = cel_rules([*resource_rules("requests"), *resource_rules("limits"), *cel_requests_fit_limits()])

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

    model_config = cel_rules(metadata_rules())

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
