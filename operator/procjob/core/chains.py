"""Chains of attempts, the unit the stage machine (core.attempts) moves: a stage's own attempts, or one
item's of a fanned-out stage (forEach). Both are mutable working copies for one pass.

- `StageView`: one stage's status; for a plain stage also its chain of attempts.
- `ItemView`: one item in flight of a fanned-out stage; its status lives in the stage's
  `status.items.inFlight` and is written back by `StageView.flush()` when the pass ends. Each of the
  item's attempts is also shown in the stage's `attempts` (the last MAX_ATTEMPTS_KEPT of any item),
  and counted in the stage's `attemptCount` and `chargedFailures`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from procjob.models.fanout import MAX_ITEM_MESSAGE
from procjob.models.spec import Stage
from procjob.models.status import MAX_ATTEMPTS_KEPT, Attempt, ItemStatus, StageState, StageStatus


class Chain(ABC):
    """What the stage machine needs of a chain of attempts."""

    view: StageView  # the stage (an item's: its fanned-out stage)

    @property
    def stage(self) -> Stage:
        return self.view.stage

    @property
    def name(self) -> str:
        return self.view.status.name

    @property
    @abstractmethod
    def item(self) -> int | None:
        """The item's index, or None for a plain stage."""

    @property
    def what(self) -> str:
        """How messages name it: `stage resize`, `stage resize item 17`."""
        return f"stage {self.name}" if self.item is None else f"stage {self.name} item {self.item}"

    @property
    @abstractmethod
    def last(self) -> Attempt | None: ...

    @property
    @abstractmethod
    def attempt_count(self) -> int:
        """Attempts so far (of an item: in this run)."""

    @property
    @abstractmethod
    def charged_failures(self) -> int: ...

    @abstractmethod
    def next_number(self) -> int:
        """The number of the next attempt: never one an earlier pod of this chain had."""

    @abstractmethod
    def begin(self, attempt: Attempt, now: datetime) -> bool:
        """Record a new attempt in progress; True when it is the stage's first."""

    @abstractmethod
    def replace_last(self, attempt: Attempt) -> None: ...

    @abstractmethod
    def set(self, **changes: Any) -> None:
        """Change state, chargedFailures, nextAttemptTime or lastRetryDecision."""


@dataclass(eq=False)
class StageView(Chain):
    """Mutable working copy of one stage's status during a pass; `index` is its place in
    spec.all_stages (the stages, then the finally stages)."""

    index: int
    stage_spec: Stage
    status: StageStatus
    final: bool = False  # a stage of spec.finally
    items: dict[int, ItemView] = field(default_factory=dict)  # a fanned-out stage's items in flight

    def __post_init__(self) -> None:
        self.view = self
        fan = self.status.items
        for record in fan.in_flight if fan is not None else ():
            self.items[record.index] = ItemView(self, record)

    @property
    def stage(self) -> Stage:
        return self.stage_spec

    @property
    def item(self) -> int | None:
        return None

    @property
    def succeeded(self) -> bool:
        return self.status.state == StageState.SUCCEEDED

    @property
    def last(self) -> Attempt | None:
        return self.status.attempts[-1] if self.status.attempts else None

    @property
    def attempt_count(self) -> int:
        return self.status.attempt_count

    @property
    def charged_failures(self) -> int:
        return self.status.charged_failures

    def next_number(self) -> int:
        return self.status.attempt_count + 1

    def begin(self, attempt: Attempt, now: datetime) -> bool:
        first = self.status.attempt_count == 0
        self.update(
            state=StageState.RUNNING,
            attempt_count=attempt.attempt,
            attempts=[*self.status.attempts, attempt][-MAX_ATTEMPTS_KEPT:],
            start_time=self.status.start_time or now,
            next_attempt_time=None,
        )
        return first

    def update(self, **changes: Any) -> None:
        self.status = self.status.model_copy(update=changes)

    def set(self, **changes: Any) -> None:
        self.update(**changes)

    def replace_last(self, attempt: Attempt) -> None:
        self.update(attempts=[*self.status.attempts[:-1], attempt])

    def show(self, attempt: Attempt) -> None:
        """An item's attempt in the stage's list: replaced where it is, else added (the last ones kept)."""
        kept = self.status.attempts
        spot = next((i for i, a in enumerate(kept) if (a.item, a.attempt) == (attempt.item, attempt.attempt)), None)
        attempts = [*kept[:spot], attempt, *kept[spot + 1 :]] if spot is not None else [*kept, attempt]
        self.update(attempts=attempts[-MAX_ATTEMPTS_KEPT:])

    def flush(self) -> None:
        """Write the items in flight back into the status (a fanned-out stage's)."""
        if self.status.items is not None:
            records = [self.items[i].record for i in sorted(self.items)]
            if records != self.status.items.in_flight:
                self.update(items=self.status.items.model_copy(update={"in_flight": records}))


@dataclass(eq=False)
class ItemView(Chain):
    """One item of a fanned-out stage in flight: its own attempts, retries and backoff."""

    view: StageView
    record: ItemStatus

    @property
    def item(self) -> int:
        return self.record.index

    @property
    def last(self) -> Attempt | None:
        return self.record.attempt

    @property
    def state(self) -> StageState:
        return self.record.state

    @property
    def attempt_count(self) -> int:
        return self.record.attempt_count

    @property
    def charged_failures(self) -> int:
        return self.record.charged_failures

    @property
    def next_attempt_time(self) -> datetime | None:
        return self.record.next_attempt_time

    def next_number(self) -> int:
        if self.record.attempt is not None:
            return self.record.attempt.attempt + 1
        fan = self.view.status.items
        return (fan.rerun_base if fan is not None else 0) + 1

    def begin(self, attempt: Attempt, now: datetime) -> bool:
        self.record = self.record.model_copy(
            update={
                "state": StageState.RUNNING,
                "attempt_count": self.record.attempt_count + 1,
                "attempt": attempt,
                "next_attempt_time": None,
            }
        )
        status = self.view.status
        fan = status.items
        if fan is not None and attempt.attempt > fan.max_attempt:
            self.view.update(items=fan.model_copy(update={"max_attempt": attempt.attempt}))
        self.view.update(attempt_count=status.attempt_count + 1)
        self.view.show(attempt)
        return False

    def replace_last(self, attempt: Attempt) -> None:
        if attempt.message is not None and len(attempt.message) > MAX_ITEM_MESSAGE:
            attempt = attempt.model_copy(update={"message": attempt.message[:MAX_ITEM_MESSAGE]})
        self.record = self.record.model_copy(update={"attempt": attempt})
        self.view.show(attempt)

    def set(self, **changes: Any) -> None:
        decision = changes.pop("last_retry_decision", None)
        if decision is not None:
            self.view.update(last_retry_decision=decision)  # the stage shows its items' latest decision
        charged = changes.get("charged_failures")
        if charged is not None and charged != self.record.charged_failures:
            added = charged - self.record.charged_failures
            self.view.update(charged_failures=self.view.status.charged_failures + added)
        self.record = self.record.model_copy(update=changes)
