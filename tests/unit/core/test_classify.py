"""Failure classification: what a failed pod means, and which retry rule decides about it."""

from __future__ import annotations

import pytest

from procjob.core.backoff import DEFAULT_RULES, EffectivePolicy, effective_policy
from procjob.core.classify import Failure, RuleMatch, failure_of, match_rule, rule_matches
from procjob.core.observe import PodObservation
from procjob.models.spec import FailureReason, RetryAction, RetryPolicy, RetryRule
from tests.unit.core.builders import make_pod

R = FailureReason


def failed(**fields: object) -> PodObservation:
    return make_pod(phase="Failed", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        pytest.param(
            failed(exit_code=1, terminated_reason="Error"),
            Failure(R.ERROR, 1, ""),
            id="a plain non-zero exit is an Error with its exit code",
        ),
        pytest.param(
            failed(exit_code=1, terminated_reason="Error", termination_message="disk full"),
            Failure(R.ERROR, 1, "disk full"),
            id="the termination message becomes the failure message",
        ),
        pytest.param(
            failed(status_reason="Evicted", status_message="The node was low on resource: memory."),
            Failure(R.EVICTED, None, "The node was low on resource: memory."),
            id="pod status reason Evicted is an eviction, with the kubelet's message",
        ),
        pytest.param(
            failed(status_reason="Evicted"),
            Failure(R.EVICTED, None, "evicted"),
            id="an eviction without a message still says evicted",
        ),
        pytest.param(
            failed(exit_code=137, terminated_reason="Error", disruption="PreemptionByScheduler"),
            Failure(R.DISRUPTION, 137, "PreemptionByScheduler"),
            id="a DisruptionTarget condition is a disruption named by its reason",
        ),
        pytest.param(
            failed(status_reason="Evicted", disruption="EvictionByEvictionAPI"),
            Failure(R.EVICTED, None, "evicted"),
            id="an eviction that also carries DisruptionTarget counts as Evicted",
        ),
        pytest.param(
            failed(exit_code=137, terminated_reason="OOMKilled"),
            Failure(R.OOM_KILLED, 137, "OOMKilled"),
            id="terminated reason OOMKilled is an out-of-memory kill",
        ),
        pytest.param(
            failed(exit_code=128, terminated_reason="ContainerCannotRun", termination_message="exec: not found"),
            Failure(R.CONTAINER_CANNOT_RUN, 128, "exec: not found"),
            id="ContainerCannotRun means the container could not start",
        ),
        pytest.param(
            failed(exit_code=128, terminated_reason="StartError"),
            Failure(R.CONTAINER_CANNOT_RUN, 128, "StartError"),
            id="StartError is classified like ContainerCannotRun",
        ),
        pytest.param(
            failed(status_reason="DeadlineExceeded", status_message="Pod was active on the node longer than allowed"),
            Failure(R.DEADLINE_EXCEEDED, None, "Pod was active on the node longer than allowed"),
            id="pod status reason DeadlineExceeded is a deadline failure",
        ),
        pytest.param(
            failed(status_reason="DeadlineExceeded"),
            Failure(R.DEADLINE_EXCEEDED, None, "deadline exceeded"),
            id="a deadline failure without a message still says so",
        ),
        pytest.param(
            failed(status_reason="NodeLost", status_message="node gone"),
            Failure(R.ERROR, None, "node gone"),
            id="an unknown pod status reason is a plain Error with the status message",
        ),
    ],
)
def test_failure_of(pod: PodObservation, expected: Failure) -> None:
    assert failure_of(pod) == expected


def rules(*items: RetryRule) -> EffectivePolicy:
    return effective_policy(RetryPolicy(rules=list(items)), None)


EXIT_2_FAILS = RetryRule(on_exit_codes=[2], action=RetryAction.FAIL_JOB)
OOM_IGNORED = RetryRule(on_reasons=[R.OOM_KILLED], action=RetryAction.IGNORE)
EXIT_137_OOM_FAILS = RetryRule(on_exit_codes=[137], on_reasons=[R.OOM_KILLED], action=RetryAction.FAIL_JOB)
EXIT_1_RETRIED = RetryRule(on_exit_codes=[1, 3], action=RetryAction.RETRY)


@pytest.mark.parametrize(
    ("effective", "failure", "expected"),
    [
        pytest.param(
            effective_policy(None, None),
            Failure(R.ERROR, 2, ""),
            RuleMatch(RetryAction.FAIL_JOB, "defaultRules[0]"),
            id="by default exit code 2 (the worker's permanent failure) fails the job",
        ),
        pytest.param(
            effective_policy(None, None),
            Failure(R.EVICTED, None, "evicted"),
            RuleMatch(RetryAction.IGNORE, "defaultRules[1]"),
            id="by default an eviction is retried without charge",
        ),
        pytest.param(
            effective_policy(None, None),
            Failure(R.DISRUPTION, 137, "preempted"),
            RuleMatch(RetryAction.IGNORE, "defaultRules[1]"),
            id="by default a disruption is retried without charge",
        ),
        pytest.param(
            effective_policy(None, None),
            Failure(R.ERROR, 1, ""),
            RuleMatch(RetryAction.RETRY, "default"),
            id="by default exit code 1 is retried and charged",
        ),
        pytest.param(
            effective_policy(None, None),
            Failure(R.POD_DELETED, None, "gone"),
            RuleMatch(RetryAction.RETRY, "default"),
            id="by default a deleted pod is retried and charged",
        ),
        pytest.param(
            rules(EXIT_2_FAILS, OOM_IGNORED),
            Failure(R.OOM_KILLED, 137, ""),
            RuleMatch(RetryAction.IGNORE, "rules[1]"),
            id="a reason rule matches whatever the exit code",
        ),
        pytest.param(
            rules(OOM_IGNORED, EXIT_137_OOM_FAILS),
            Failure(R.OOM_KILLED, 137, ""),
            RuleMatch(RetryAction.IGNORE, "rules[0]"),
            id="the first matching rule wins",
        ),
        pytest.param(
            rules(EXIT_137_OOM_FAILS),
            Failure(R.OOM_KILLED, 137, ""),
            RuleMatch(RetryAction.FAIL_JOB, "rules[0]"),
            id="a rule with exit codes and reasons matches when both match",
        ),
        pytest.param(
            rules(EXIT_137_OOM_FAILS),
            Failure(R.ERROR, 137, ""),
            RuleMatch(RetryAction.RETRY, "default"),
            id="a rule with exit codes and reasons does not match on the exit code alone",
        ),
        pytest.param(
            rules(EXIT_137_OOM_FAILS),
            Failure(R.OOM_KILLED, 1, ""),
            RuleMatch(RetryAction.RETRY, "default"),
            id="a rule with exit codes and reasons does not match on the reason alone",
        ),
        pytest.param(
            rules(EXIT_1_RETRIED),
            Failure(R.ERROR, 3, ""),
            RuleMatch(RetryAction.RETRY, "rules[0]"),
            id="an exit-code rule matches any listed code",
        ),
        pytest.param(
            rules(EXIT_1_RETRIED),
            Failure(R.STARTUP_TIMEOUT, None, ""),
            RuleMatch(RetryAction.RETRY, "default"),
            id="an exit-code rule never matches a failure without an exit code",
        ),
        pytest.param(
            rules(EXIT_2_FAILS),
            Failure(R.EVICTED, None, ""),
            RuleMatch(RetryAction.RETRY, "default"),
            id="explicit rules replace the defaults, so an eviction is then charged",
        ),
        pytest.param(
            EffectivePolicy(3, None, None, DEFAULT_RULES, default_rules=True),
            Failure(R.ERROR, 0, ""),
            RuleMatch(RetryAction.RETRY, "default"),
            id="no match means Retry with rule default",
        ),
    ],
)
def test_match_rule(effective: EffectivePolicy, failure: Failure, expected: RuleMatch) -> None:
    assert match_rule(effective, failure) == expected


def test_rule_matches_needs_every_given_matcher() -> None:
    rule = RetryRule(on_exit_codes=[1], on_reasons=[R.ERROR], action=RetryAction.RETRY)
    assert rule_matches(rule, Failure(R.ERROR, 1, ""))
    assert not rule_matches(rule, Failure(R.ERROR, 2, ""))
    assert not rule_matches(rule, Failure(R.OOM_KILLED, 1, ""))
