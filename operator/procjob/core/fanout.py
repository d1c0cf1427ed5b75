"""Fan-out: a stage with `forEach` runs once per item, each item its own chain of attempts (core.chains,
core.attempts: its own pods, retries and backoff).

- **Start.** When the stage may start, its items are read: the literal list, or the upstream stage's
  list output it names (a missing output, a value that is not a list, too many items or an item of
  the wrong shape fails the stage, naming it). `status.items` counts them.
- **Fill.** Items start in index order (a retried job's items to re-run first) while fewer than
  `parallelism` are in flight — running, or waiting for their retry: a waiting item keeps its place, as
  a job waiting for a retry keeps its queue slot — and fewer than MAX_IN_FLIGHT in the whole job, and
  the pass may still create pods (the operator's pod caps, `decide`'s pods_left).
- **End of an item.** Its outputs are kept by index (within MAX_FANOUT_OUTPUT_BYTES); a failed item
  (after its retries) is counted and listed in `failedIndexes` (ItemFailed in the audit). FailFast:
  once more items have failed than `toleratedFailures`, the items in flight stop and the stage fails.
- **End of the stage.** When no item is left: it fails if more items failed than tolerated, else it
  succeeds with its outputs: for each key any item wrote, the values in item order (null for items
  that wrote none).
"""

from __future__ import annotations

import json
from typing import Any

from procjob.core.attempts import StageMachine
from procjob.core.chains import Chain, ItemView, StageView
from procjob.core.itemset import parse, render
from procjob.models.fanout import (
    MAX_FANOUT_OUTPUT_BYTES,
    MAX_IN_FLIGHT,
    FailureMode,
    for_each_source,
    items_problem,
)
from procjob.models.status import AttemptState, FanOutStatus, ItemStatus, Reason, StageState
from procjob.models.transitions import Transition

IN_PROGRESS = (AttemptState.PENDING, AttemptState.RUNNING)


class FanOut(StageMachine):
    """The items of fanned-out stages."""

    # ------------------------------------------------------------------------------ the items
    def items_of(self, view: StageView) -> tuple[list[Any], str | None]:
        """The stage's items, or why they cannot be read (its message names the stage)."""
        cache = self.resolved
        if view.status.name in cache:
            return cache[view.status.name], None
        value = view.stage.for_each
        source = for_each_source(value)
        if source is not None:
            stage, key = source
            outputs = self.by_name[stage].status.outputs
            if outputs is None or key not in outputs:
                return [], f"forEach: stage {stage!r} has no output {key!r}"
            value = outputs[key]
            if not isinstance(value, list):
                return [], f"forEach: output {key!r} of stage {stage!r} is not a list"
            problem = items_problem(value)
            if problem:
                return [], f"forEach: output {key!r} of stage {stage!r}: {problem}"
        items = list(value) if isinstance(value, list) else []
        cache[view.status.name] = items
        return items, None

    def item_value(self, view: StageView, index: int) -> Any:
        items, _ = self.items_of(view)
        return items[index] if index < len(items) else None

    def fan(self, view: StageView) -> FanOutStatus:
        assert view.status.items is not None
        return view.status.items

    def set_fan(self, view: StageView, **changes: Any) -> None:
        view.update(items=self.fan(view).model_copy(update=changes))

    # ------------------------------------------------------------------------------ the stage
    def start_fanout(self, view: StageView) -> None:
        """The stage may start: read its items and start the first ones."""
        name = view.status.name
        items, problem = self.items_of(view)
        if problem is not None:
            view.update(state=StageState.FAILED, completion_time=self.now, message=problem)
            self.record(Transition.STAGE_FAILED, f"stage {name}: {problem}", reason="InvalidItems", stage=name)
            self.gave_up(view, Reason.STAGE_FAILED, f"stage {name}: {problem}")
            return
        base = view.status.items.max_attempt if view.status.items is not None else 0
        fan = FanOutStatus(total=len(items), max_attempt=base, rerun_base=base)
        view.update(state=StageState.RUNNING, start_time=view.status.start_time or self.now, items=fan)
        self.record(Transition.STAGE_STARTED, f"stage {name} started: {len(items)} items", stage=name)
        self.continue_fanout(view)

    def continue_fanout(self, view: StageView) -> None:
        """Start what is due (retries, items stopped by a suspend), then new items; end the stage when
        no item is left."""
        if view.status.state == StageState.SUSPENDED:
            view.update(state=StageState.RUNNING)
        for chain in list(view.items.values()):
            last = chain.last
            if last is not None and last.state in IN_PROGRESS:
                continue
            due = chain.next_attempt_time
            if chain.state == StageState.BACKOFF_WAITING and due is not None and self.now < due:
                self.at(due)
            else:
                self.start_attempt(chain)
        self.fill(view)
        if view.status.state == StageState.RUNNING and not view.items and self.next_index(view) is None:
            self.complete(view)

    def next_index(self, view: StageView) -> int | None:
        fan = self.fan(view)
        rerun = parse(fan.rerun)
        if rerun:
            return min(rerun)
        return fan.next if fan.next < fan.total else None

    def fill(self, view: StageView) -> None:
        parallelism = view.stage.parallelism or 1
        while view.status.state == StageState.RUNNING and len(view.items) < parallelism:
            index = self.next_index(view)
            if index is None or sum(len(v.items) for v in self.stages) >= MAX_IN_FLIGHT:
                return
            if self.backlog_full or (self.pods_left is not None and self.pods_left <= 0):
                self.backlogged |= self.backlog_full
                self.starved |= not self.backlog_full
                return
            fan = self.fan(view)
            rerun = parse(fan.rerun)
            if index in rerun:
                self.set_fan(view, rerun=render(rerun - {index}))
            else:
                self.set_fan(view, next=index + 1)
            chain = ItemView(view, ItemStatus(index=index, state=StageState.RUNNING))
            view.items[index] = chain
            self.start_attempt(chain)

    def complete(self, view: StageView) -> None:
        """No item is left: the stage fails if more items failed than tolerated, else succeeds."""
        fan, name = self.fan(view), view.status.name
        tolerated = view.stage.policy.tolerated_failures
        counts = f"{fan.succeeded} of {fan.total} items succeeded"
        if fan.failed > tolerated:
            self.fanout_failed(view, f"stage {name}: {fan.failed} of {fan.total} items failed ({tolerated} tolerated)")
            return
        outputs, note = self.assemble(view)
        message = counts + (f", {fan.failed} failed ({tolerated} tolerated)" if fan.failed else "") + note
        view.update(
            state=StageState.SUCCEEDED,
            completion_time=self.now,
            outputs=outputs,
            message=message,
            items=fan.model_copy(update={"outputs": None}),
        )
        self.record(Transition.STAGE_SUCCEEDED, f"stage {name} succeeded: {message}", stage=name)

    def assemble(self, view: StageView) -> tuple[dict[str, Any] | None, str]:
        """For each key any item wrote, the values in item order (null for the others)."""
        fan = self.fan(view)
        if fan.outputs_dropped:
            return None, f"; outputs not kept: over {MAX_FANOUT_OUTPUT_BYTES // 1024} KiB"
        kept = fan.outputs or {}
        keys = dict.fromkeys(k for i in sorted(kept, key=int) for k in kept[i])
        outputs = {key: [(kept.get(str(i)) or {}).get(key) for i in range(fan.total)] for key in keys}
        if len(json.dumps(outputs, separators=(",", ":"))) > 2 * MAX_FANOUT_OUTPUT_BYTES:
            return None, f"; outputs not kept: over {2 * MAX_FANOUT_OUTPUT_BYTES // 1024} KiB as lists"
        return (outputs or None), ""

    def fanout_failed(self, view: StageView, message: str) -> None:
        """The stage fails because of its items: those in flight stop, then as any failed stage."""
        fan = self.fan(view)
        self.stop_items(view, "ItemFailed")
        view.update(state=StageState.FAILED, completion_time=self.now, next_attempt_time=None, message=message)
        detail = {"failed": fan.failed, "failedIndexes": fan.failed_indexes, "total": fan.total}
        self.record(
            Transition.STAGE_FAILED, message, reason=Reason.STAGE_FAILED.value, stage=view.status.name, detail=detail
        )
        self.gave_up(view, Reason.STAGE_FAILED, message)

    def stop_chain(self, chain: Chain, why: str, stage_state: StageState, failed: bool = False) -> bool:
        """Stop the chain's attempt in progress (suspend, cancel, a deadline, a failure beside it), not
        charged; False when it had none. An attempt whose pod has already succeeded is recorded as the
        success it is. An attempt recorded in this very pass loses its pod create: it never runs."""
        last = chain.last
        if last is None or last.state not in (AttemptState.PENDING, AttemptState.RUNNING):
            waiting = isinstance(chain, ItemView) and chain.state == StageState.BACKOFF_WAITING
            if waiting and stage_state != StageState.SUSPENDED:
                chain.set(state=stage_state, next_attempt_time=None)
            return False
        pod = self.pods.get(last.pod_name)
        if pod is not None and pod.phase == "Succeeded" and last.pod_uid in (None, pod.uid):
            self.attempt_succeeded(chain, last.model_copy(update={"pod_uid": pod.uid}), pod)
            return True
        state = AttemptState.FAILED if failed else AttemptState.STOPPED
        stopped = last.model_copy(update={"state": state, "finish_time": self.now, "reason": why, "charged": False})
        chain.replace_last(stopped)
        chain.set(state=stage_state, next_attempt_time=None)
        self.create = [c for c in self.create if c.name != last.pod_name]
        self.record(
            Transition.ATTEMPT_STOPPED if not failed else Transition.ATTEMPT_FAILED,
            f"{chain.what} attempt {last.attempt} stopped: {why}",
            reason=why,
            stage=chain.name,
            attempt=stopped,
        )
        return True

    def stop_items(self, view: StageView, why: str) -> None:
        """Stop the attempts in progress of a fanned-out stage's items (not charged), and their pods."""
        for chain in list(view.items.values()):
            last = chain.last
            if self.stop_chain(chain, why, StageState.CANCELLED):
                pod = self.pods.get(last.pod_name) if last is not None else None
                if pod is not None and pod.live:
                    self.delete_pod(pod, why)

    # ------------------------------------------------------------------------------ an item's end
    def item_succeeded(self, chain: ItemView, outputs: dict[str, Any] | None) -> None:
        view = chain.view
        fan = self.fan(view)
        del view.items[chain.item]
        changes: dict[str, Any] = {"succeeded": fan.succeeded + 1}
        if outputs and not fan.outputs_dropped:
            size = len(json.dumps(outputs, separators=(",", ":"))) + len(str(chain.item)) + 4
            if fan.output_bytes + size > MAX_FANOUT_OUTPUT_BYTES:
                changes.update(outputs=None, outputs_dropped=True)
            else:
                changes.update(
                    outputs={**(fan.outputs or {}), str(chain.item): outputs}, output_bytes=fan.output_bytes + size
                )
        self.set_fan(view, **changes)

    def item_failed(self, chain: ItemView, reason: str, message: str, detail: dict[str, Any]) -> None:
        view = chain.view
        fan = self.fan(view)
        del view.items[chain.item]
        failed = fan.failed + 1
        self.set_fan(view, failed=failed, failed_indexes=render(parse(fan.failed_indexes) | {chain.item}))
        view.update(message=message[:1024])
        self.record(Transition.ITEM_FAILED, message, reason=reason, stage=chain.name, item=chain.item, detail=detail)
        policy = view.stage.policy
        if policy.mode == FailureMode.FAIL_FAST and failed > policy.tolerated_failures:
            name = view.status.name
            self.fanout_failed(
                view, f"stage {name}: {failed} of {fan.total} items failed ({policy.tolerated_failures} tolerated)"
            )

    def rearm(self, view: StageView) -> None:
        """A retried job: the stage's failed items, and those stopped in flight, run again (numbering on)."""
        fan = view.status.items
        if fan is None:
            view.update(state=StageState.PENDING)
            return
        again = parse(fan.rerun) | parse(fan.failed_indexes) | set(view.items)
        view.items.clear()
        fan = fan.model_copy(
            update={"failed": 0, "failed_indexes": "", "rerun": render(again), "rerun_base": fan.max_attempt}
        )
        view.update(state=StageState.RUNNING, items=fan, completion_time=None, message=None)
