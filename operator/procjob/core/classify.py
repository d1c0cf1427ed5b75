"""Failure classification: what a failed pod means, and which retry rule applies.

`failure_of` turns a finished pod into a `Failure` (reason + exit code); `match_rule` finds the
first rule that matches it. No match means Retry (charged), as in batch/v1 Job's podFailurePolicy.
"""

from __future__ import annotations

from dataclasses import dataclass

from procjob.core.backoff import EffectivePolicy
from procjob.core.observe import PodObservation
from procjob.models.spec import FailureReason, RetryAction, RetryRule


@dataclass(frozen=True, slots=True)
class Failure:
    reason: FailureReason
    exit_code: int | None
    message: str


@dataclass(frozen=True, slots=True)
class RuleMatch:
    action: RetryAction
    rule: str  # "rules[0]", "defaultRules[1]" or "default"


def failure_of(pod: PodObservation) -> Failure:
    """Classify a pod that ended Failed (or is being treated as failed)."""
    detail = pod.termination_message or pod.status_message or ""
    if pod.status_reason == "Evicted":
        return Failure(FailureReason.EVICTED, pod.exit_code, detail or "evicted")
    if pod.disruption:
        return Failure(FailureReason.DISRUPTION, pod.exit_code, detail or pod.disruption)
    if pod.terminated_reason == "OOMKilled":
        return Failure(FailureReason.OOM_KILLED, pod.exit_code, detail or "OOMKilled")
    if pod.terminated_reason in {"ContainerCannotRun", "StartError"}:
        return Failure(FailureReason.CONTAINER_CANNOT_RUN, pod.exit_code, detail or pod.terminated_reason)
    if pod.status_reason == "DeadlineExceeded":
        return Failure(FailureReason.DEADLINE_EXCEEDED, pod.exit_code, detail or "deadline exceeded")
    return Failure(FailureReason.ERROR, pod.exit_code, detail)


def rule_matches(rule: RetryRule, failure: Failure) -> bool:
    if rule.on_exit_codes is not None and failure.exit_code not in rule.on_exit_codes:
        return False
    return rule.on_reasons is None or failure.reason in rule.on_reasons


def match_rule(policy: EffectivePolicy, failure: Failure) -> RuleMatch:
    prefix = "defaultRules" if policy.default_rules else "rules"
    for index, rule in enumerate(policy.rules):
        if rule_matches(rule, failure):
            return RuleMatch(rule.action, f"{prefix}[{index}]")
    return RuleMatch(RetryAction.RETRY, "default")
