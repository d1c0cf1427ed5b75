"""Retry policy arithmetic: the effective policy, the schedule, deterministic jitter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procjob.core.backoff import (
    DEFAULT_BACKOFF,
    DEFAULT_LIMIT,
    DEFAULT_RULES,
    EffectivePolicy,
    effective_policy,
    jitter_fraction,
    retry_delay,
    scheduled_delay,
)
from procjob.models.spec import Backoff, RetryAction, RetryPolicy, RetryRule

FAIL_ON_3 = RetryRule(on_exit_codes=[3], action=RetryAction.FAIL_JOB)
IGNORE_ON_4 = RetryRule(on_exit_codes=[4], action=RetryAction.IGNORE)
FAST = Backoff(initial_seconds=1, factor=2, max_seconds=60)
SLOW = Backoff(initial_seconds=30, factor=3, max_seconds=600)


def policy(
    limit: int = 3,
    backoff: Backoff | None = None,
    delays: tuple[int, ...] | None = None,
    jitter: float | None = None,
) -> EffectivePolicy:
    if jitter is not None:
        backoff = (backoff or Backoff()).model_copy(update={"jitter": jitter})
    return EffectivePolicy(
        limit=limit,
        backoff=backoff if delays is None else None,
        delays_seconds=delays,
        rules=DEFAULT_RULES,
        default_rules=True,
    )


@pytest.mark.parametrize(
    ("job", "stage", "expected"),
    [
        pytest.param(
            None,
            None,
            EffectivePolicy(DEFAULT_LIMIT, DEFAULT_BACKOFF, None, DEFAULT_RULES, default_rules=True),
            id="no policy anywhere gives limit 3, the default backoff and the default rules",
        ),
        pytest.param(
            RetryPolicy(limit=5, backoff=FAST, rules=[FAIL_ON_3]),
            None,
            EffectivePolicy(5, FAST, None, (FAIL_ON_3,), default_rules=False),
            id="a job policy applies to a stage that sets none",
        ),
        pytest.param(
            RetryPolicy(limit=5, backoff=FAST, rules=[FAIL_ON_3]),
            RetryPolicy(limit=1),
            EffectivePolicy(1, FAST, None, (FAIL_ON_3,), default_rules=False),
            id="a stage limit overrides only the limit",
        ),
        pytest.param(
            RetryPolicy(limit=5, backoff=FAST, rules=[FAIL_ON_3]),
            RetryPolicy(rules=[IGNORE_ON_4]),
            EffectivePolicy(5, FAST, None, (IGNORE_ON_4,), default_rules=False),
            id="stage rules replace the job rules and keep the job limit and backoff",
        ),
        pytest.param(
            RetryPolicy(limit=5, rules=[FAIL_ON_3]),
            RetryPolicy(rules=[]),
            EffectivePolicy(5, DEFAULT_BACKOFF, None, (), default_rules=False),
            id="an empty stage rule list means no rules at all, not the defaults",
        ),
        pytest.param(
            RetryPolicy(limit=0),
            None,
            EffectivePolicy(0, DEFAULT_BACKOFF, None, DEFAULT_RULES, default_rules=True),
            id="limit 0 is kept, not replaced by the default",
        ),
        pytest.param(
            RetryPolicy(backoff=FAST),
            RetryPolicy(backoff=SLOW),
            EffectivePolicy(DEFAULT_LIMIT, SLOW, None, DEFAULT_RULES, default_rules=True),
            id="a stage backoff replaces the job backoff",
        ),
        pytest.param(
            RetryPolicy(backoff=FAST),
            RetryPolicy(delays_seconds=[1, 4, 8]),
            EffectivePolicy(DEFAULT_LIMIT, None, (1, 4, 8), DEFAULT_RULES, default_rules=True),
            id="stage delaysSeconds replace a job backoff",
        ),
        pytest.param(
            RetryPolicy(delays_seconds=[5]),
            RetryPolicy(backoff=SLOW),
            EffectivePolicy(DEFAULT_LIMIT, SLOW, None, DEFAULT_RULES, default_rules=True),
            id="a stage backoff replaces job delaysSeconds",
        ),
        pytest.param(
            RetryPolicy(delays_seconds=[5, 10]),
            RetryPolicy(limit=7),
            EffectivePolicy(7, None, (5, 10), DEFAULT_RULES, default_rules=True),
            id="job delaysSeconds apply to a stage that only overrides the limit",
        ),
    ],
)
def test_effective_policy(job: RetryPolicy | None, stage: RetryPolicy | None, expected: EffectivePolicy) -> None:
    assert effective_policy(job, stage) == expected


@pytest.mark.parametrize(
    ("effective", "delays"),
    [
        pytest.param(
            policy(backoff=Backoff(initial_seconds=1, factor=2, max_seconds=10)),
            [1, 2, 4, 8, 10, 10],
            id="exponential backoff doubles from 1s and is capped at maxSeconds",
        ),
        pytest.param(policy(), [10, 20, 40, 80, 160, 300, 300], id="the default backoff is 10s doubling up to 300s"),
        pytest.param(
            policy(backoff=Backoff(initial_seconds=3, factor=1, max_seconds=300)),
            [3, 3, 3],
            id="factor 1 gives a constant delay",
        ),
        pytest.param(
            policy(backoff=Backoff(initial_seconds=0, factor=2, max_seconds=300)),
            [0, 0, 0],
            id="initialSeconds 0 retries at once every time",
        ),
        pytest.param(
            policy(backoff=Backoff(initial_seconds=1, factor=1.5, max_seconds=300)),
            [1, 1.5, 2.25, 3.375, 5.0625],
            id="a fractional factor gives fractional delays",
        ),
        pytest.param(policy(delays=(1, 4, 8)), [1, 4, 8, 8, 8], id="explicit delays [1, 4, 8] repeat the last one"),
        pytest.param(policy(delays=(0,)), [0, 0], id="a single explicit delay applies to every retry"),
        pytest.param(
            EffectivePolicy(3, None, None, DEFAULT_RULES, default_rules=True),
            [10, 20],
            id="a policy with neither backoff nor delays falls back to the default backoff",
        ),
    ],
)
def test_scheduled_delay(effective: EffectivePolicy, delays: list[float]) -> None:
    assert [scheduled_delay(effective, n) for n in range(1, len(delays) + 1)] == delays


def test_scheduled_delay_stays_capped_for_huge_retry_numbers() -> None:
    assert scheduled_delay(policy(backoff=Backoff(initial_seconds=1, factor=10, max_seconds=7)), 10_000) == 7


@pytest.mark.parametrize("retry", [0, -1], ids=["retry 0 is not a retry", "a negative retry number is refused"])
def test_scheduled_delay_counts_retries_from_one(retry: int) -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        scheduled_delay(policy(), retry)


@pytest.mark.parametrize(
    ("effective", "retry", "seed", "expected"),
    [
        pytest.param(policy(backoff=FAST), 3, "uid/s/3", 4.0, id="without jitter the delay is the schedule"),
        pytest.param(
            policy(backoff=Backoff(initial_seconds=1, factor=1.5, max_seconds=300)),
            5,
            "uid/s/5",
            5.0625,
            id="rounding to milliseconds never goes below the schedule",
        ),
        pytest.param(policy(delays=(1, 4, 8)), 2, "uid/s/2", 4.0, id="explicit delays get no jitter"),
        pytest.param(
            policy(backoff=Backoff(initial_seconds=10, factor=2, max_seconds=300, jitter=0.5)),
            1,
            "job-a/resize/1",
            round(10 * (1 + 0.5 * jitter_fraction("job-a/resize/1")), 3),
            id="jitter adds a seed-derived fraction of the delay, rounded to milliseconds",
        ),
    ],
)
def test_retry_delay(effective: EffectivePolicy, retry: int, seed: str, expected: float) -> None:
    assert retry_delay(effective, retry, seed) == expected


def test_jitter_is_the_same_for_the_same_seed_and_differs_between_seeds() -> None:
    jittery = policy(backoff=Backoff(initial_seconds=100, factor=2, max_seconds=300, jitter=1.0))
    assert retry_delay(jittery, 1, "a/s/1") == retry_delay(jittery, 1, "a/s/1")
    assert len({retry_delay(jittery, 1, f"a/s/{n}") for n in range(20)}) > 10


def test_jitter_fraction_is_a_stable_number_in_the_unit_interval() -> None:
    assert jitter_fraction("x") == jitter_fraction("x")
    assert all(0 <= jitter_fraction(str(n)) < 1 for n in range(200))


@settings(max_examples=200, deadline=None)
@given(
    initial=st.integers(0, 86400),
    factor=st.floats(1.0, 10.0),
    cap=st.integers(0, 86400),
    jitter=st.floats(0.0, 1.0),
    retry=st.integers(1, 60),
    seed=st.text(max_size=20),
)
def test_retry_delay_is_never_below_the_schedule_and_at_most_jitter_above(
    initial: int, factor: float, cap: int, jitter: float, retry: int, seed: str
) -> None:
    effective = policy(backoff=Backoff(initial_seconds=initial, factor=factor, max_seconds=cap, jitter=jitter))
    base = scheduled_delay(effective, retry)
    delay = retry_delay(effective, retry, seed)
    assert base <= min(cap, initial * factor ** (retry - 1)) + 1e-9
    assert base <= delay <= base * (1 + jitter) + 0.0005
