"""How a job's stages connect: `stages[].dependsOn` and `spec.finally`, as the schema checks them.

Every rule is written twice, as CEL for the API server and in Python for the operator, with the same
message naming the stage (see models.syntax). What a schema cannot see — a cycle — is checked by the
operator before any pod (core.dag, core.validation), also naming the stages.

- `dependsOn` unset: the stage listed before it (none for the first), so a job without dependsOn is
  the chain it always was. `dependsOn: []`: the stage starts when the job starts.
- `dependsOn` names stages of the same list: a main stage names main stages, a finally stage names
  finally stages (the finally stages run after all main stages anyway).
- Stage names are unique across `stages` and `finally` (they name pods, labels and templates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

MAX_FINALLY = 8  # stages in spec.finally
FINALLY_DEADLINE_SECONDS = 600  # spec.finallyDeadlineSeconds when unset
MAX_FINALLY_DEADLINE_SECONDS = 86400

DEPENDS_ON_SELF = "a stage cannot depend on itself"
NAMES_UNIQUE = "stage names must be unique across stages and finally"


class Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def depends_on(self) -> list[str] | None: ...


def _unknown_cel(field: str) -> str:
    """CEL: whether a stage of `self.<field>` has a dependsOn naming a stage not in that list."""
    return f"self.{field}.exists(s, has(s.dependsOn) && !s.dependsOn.all(d, self.{field}.exists(t, t.name == d)))"


def _unknown_name_cel(field: str) -> str:
    """CEL: the name of the first such stage. Mapped to names before filtering: a filter over the stages
    themselves makes the API server estimate the cost of copying whole stage objects, far over budget."""
    unknown = f"has(s.dependsOn) && !s.dependsOn.all(d, self.{field}.exists(t, t.name == d))"
    return f"self.{field}.map(s, {unknown} ? s.name : '').filter(n, n != '')[0]"


def unknown_dependency_message(field: str, stage: str) -> str:
    return f"stage '{stage}': dependsOn names a stage that is not in spec.{field}"


def flow_rules() -> list[dict[str, str]]:
    """CEL on ProcessingJobSpec: dependsOn names stages of its own list; names unique across both lists;
    finally and its deadline immutable (like stages)."""
    return [
        {
            "rule": f"!{_unknown_cel('stages')}",
            "messageExpression": '"stage \'" + '
            + _unknown_name_cel("stages")
            + ' + "\': dependsOn names a stage that is not in spec.stages"',
            "fieldPath": ".stages",
        },
        {
            "rule": f"!has(self.finally) || !{_unknown_cel('finally')}",
            "messageExpression": '"stage \'" + '
            + _unknown_name_cel("finally")
            + ' + "\': dependsOn names a stage that is not in spec.finally"',
            "fieldPath": ".finally",
        },
        {
            "rule": "!has(self.finally) || self.finally.all(f, !self.stages.exists(s, s.name == f.name) && "
            "self.finally.exists_one(g, g.name == f.name))",
            "message": NAMES_UNIQUE,
            "fieldPath": ".finally",
        },
        {
            "rule": "has(self.finally) == has(oldSelf.finally) && "
            "(!has(self.finally) || self.finally == oldSelf.finally)",
            "message": "finally is immutable",
            "fieldPath": ".finally",
        },
        {
            "rule": "has(self.finallyDeadlineSeconds) == has(oldSelf.finallyDeadlineSeconds) && "
            "(!has(self.finallyDeadlineSeconds) || self.finallyDeadlineSeconds == oldSelf.finallyDeadlineSeconds)",
            "message": "finallyDeadlineSeconds is immutable",
            "fieldPath": ".finallyDeadlineSeconds",
        },
    ]


def depends_on_problem(group: Sequence[Named], field: str) -> str | None:
    """`flow_rules`' dependsOn rule in Python, for one list (spec.stages or spec.finally)."""
    names = {s.name for s in group}
    for stage in group:
        if any(d not in names for d in stage.depends_on or []):
            return unknown_dependency_message(field, stage.name)
    return None


def finally_names_problem(stages: Sequence[Named], final: Sequence[Named]) -> str | None:
    """`flow_rules`' unique-names rule in Python."""
    main = {s.name for s in stages}
    seen: set[str] = set()
    for stage in final:
        if stage.name in main or stage.name in seen:
            return f"{NAMES_UNIQUE}: {stage.name!r} appears twice"
        seen.add(stage.name)
    return None
