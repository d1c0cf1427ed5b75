"""Retry policy arithmetic: the effective policy of a stage and the wait before retry n.

Pure functions with no clock and no randomness: jitter is derived from a seed (job UID, stage,
attempt), so a restarted operator computes the same wait and a backoff is never reset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from procjob.models.contract import EXIT_PERMANENT
from procjob.models.spec import Backoff, FailureReason, RetryAction, RetryPolicy, RetryRule

DEFAULT_LIMIT = 3
DEFAULT_BACKOFF = Backoff()
DEFAULT_RULES: tuple[RetryRule, ...] = (
    RetryRule(on_exit_codes=[EXIT_PERMANENT], action=RetryAction.FAIL_JOB),  # the worker contract's "do not retry"
    RetryRule(on_reasons=[FailureReason.EVICTED, FailureReason.DISRUPTION], action=RetryAction.IGNORE),
)


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """A stage's retry policy after the stage's fields override the job's and defaults fill the rest."""

    limit: int
    backoff: Backoff | None
    delays_seconds: tuple[int, ...] | None
    rules: tuple[RetryRule, ...]
    default_rules: bool


def effective_policy(job: RetryPolicy | None, stage: RetryPolicy | None) -> EffectivePolicy:
    """Field-by-field override: a stage's `limit` or `rules` replace the job's; a stage that sets
    `backoff` or `delaysSeconds` replaces the job's schedule (whichever kind the job had)."""
    job = job or RetryPolicy()
    stage = stage or RetryPolicy()
    limit = stage.limit if stage.limit is not None else job.limit
    schedule = stage if (stage.backoff is not None or stage.delays_seconds is not None) else job
    rules = stage.rules if stage.rules is not None else job.rules
    delays = tuple(schedule.delays_seconds) if schedule.delays_seconds is not None else None
    backoff = schedule.backoff if schedule.backoff is not None else (None if delays else DEFAULT_BACKOFF)
    return EffectivePolicy(
        limit=DEFAULT_LIMIT if limit is None else limit,
        backoff=backoff,
        delays_seconds=delays,
        rules=DEFAULT_RULES if rules is None else tuple(rules),
        default_rules=rules is None,
    )


def jitter_fraction(seed: str) -> float:
    """A stable number in [0, 1) from a seed string."""
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def scheduled_delay(policy: EffectivePolicy, retry_number: int) -> float:
    """The wait before retry `retry_number` (1 = first retry), before jitter."""
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    if policy.delays_seconds is not None:
        return float(policy.delays_seconds[min(retry_number, len(policy.delays_seconds)) - 1])
    backoff = policy.backoff or DEFAULT_BACKOFF
    exponent = min(retry_number - 1, 64)  # beyond this every realistic cap has long been reached
    return float(min(backoff.max_seconds, backoff.initial_seconds * backoff.factor**exponent))


def retry_delay(policy: EffectivePolicy, retry_number: int, seed: str) -> float:
    """The wait before retry `retry_number`: the schedule plus deterministic jitter, never less.

    Jitter adds up to `jitter` x the scheduled delay (so it may exceed maxSeconds by that fraction);
    the result is rounded to milliseconds, but never below the schedule (5.0625 stays 5.0625).
    """
    base = scheduled_delay(policy, retry_number)
    jitter = policy.backoff.jitter if (policy.backoff is not None and policy.delays_seconds is None) else 0.0
    return max(base, round(base * (1.0 + jitter * jitter_fraction(seed)), 3))
