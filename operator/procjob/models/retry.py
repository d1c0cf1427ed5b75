"""Retry policy of a stage: how failed attempts are classified and retried (part of the spec;
re-exported by models.spec)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from procjob.models.base import ApiModel
from procjob.models.syntax import (
    CEL,
    MAX_RULES,
)


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
