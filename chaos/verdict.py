"""One invariant's verdict: passed or not, how much was checked, the first violations in words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# An audit row as the checker reads it: seq, type, reason, stage, attempt, occurred_at (epoch s), action
Row = tuple[int, str, str, str | None, int | None, float, str | None]
MAX_LISTED = 25


@dataclass
class Verdict:
    ok: bool = True
    checked: int = 0
    violations: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.ok = False
        if len(self.violations) < MAX_LISTED:
            self.violations.append(message)
        self.notes["violations_total"] = self.notes.get("violations_total", 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "violations": self.violations, "notes": self.notes}
