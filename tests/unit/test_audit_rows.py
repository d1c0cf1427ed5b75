"""Moved: the row builders' tests are tests/unit/adapters/audit/test_rows.py, the hostile values
tests/unit/adapters/audit/hostile.py. This re-export remains until tests/unit/controller/test_relay.py
imports them from there; then delete this file."""

from tests.unit.adapters.audit.hostile import hostile, hostile_text, strict_json

__all__ = ["hostile", "hostile_text", "strict_json"]
