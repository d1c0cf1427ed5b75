"""Kubernetes Events that mirror one reconcile pass's transitions (a lossy mirror; the audit is
the record).

One Event per type (Normal, Warning) and pass: its message is every transition's message in order
(a repeated one once), its reason the most significant transition's (`Transition.rank`: the job's
end or an invalid spec, then the job's, a stage's, an attempt's; the first among equals). A stage
moving on costs one API write instead of three; every transition still shows in `kubectl
describe`, and the audit keeps each one as its own record. An Event that is only progress (the
job's start, a stage's start and success) says so: the shell may post it with the job's next one.
"""

from __future__ import annotations

from collections.abc import Iterable

from procjob.core.decision import Event, EventType
from procjob.models.audit import AuditEntry
from procjob.models.transitions import Transition


def mirror_events(transitions: Iterable[AuditEntry], *, routine: bool = True) -> tuple[Event, ...]:
    """The Events of one pass; with `routine=False` a healthy run's routine steps are not mirrored."""
    groups: dict[EventType, list[AuditEntry]] = {}
    for t in transitions:
        meaning = t.type.meaning
        if meaning.event_reason is None or (meaning.routine and not routine):
            continue
        groups.setdefault(EventType.WARNING if meaning.warning else EventType.NORMAL, []).append(t)
    events = []
    for type_, group in groups.items():
        lead = min(group, key=lambda t: t.type.rank)
        messages = dict.fromkeys(t.message for t in group)  # InvalidSpec and JobFailed say the same
        progress = all(t.type.meaning.routine or t.type == Transition.JOB_STARTED for t in group)
        events.append(Event(type_, lead.type.meaning.event_reason or "", "; ".join(messages), progress))
    return tuple(events)
