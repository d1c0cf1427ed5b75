"""The Argo CD health check and resource actions for ProcessingJob, run as Argo CD runs them.

The scripts and their fixtures live in Argo CD's own layout under
argocd/resource_customizations/procjob.dev/ProcessingJob (health.lua + health_test.yaml +
testdata/, actions/discovery.lua, actions/<name>/action.lua, actions/action_test.yaml +
actions/testdata/). This harness reads the same test files Argo CD's Go tests would and runs the
scripts in Lua 5.1 (gopher-lua's dialect) with what Argo CD's util/lua gives a custom script:
the global `obj` (the object decoded from JSON: maps as tables, lists as 1-based tables, no nil
values) and only the base, table, package and a "safe" os library (os.time, os.date; also via
`require("os")`) — no string, math, io or debug library, and no string methods. Empty tables in an
action's result are given back as the original's map or list, as Argo CD's cleanReturnedObj does.

The fixtures are checked against the operator's own status model, so they stay realistic.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from procjob.models.job import ProcessingJob
from procjob.models.lifecycle import finished, retryable
from procjob.models.status import ProcessingJobStatus

ROOT = Path(__file__).resolve().parents[2]
KIND_DIR = ROOT / "argocd" / "resource_customizations" / "procjob.dev" / "ProcessingJob"
ACTIONS_DIR = KIND_DIR / "actions"
FIXED_NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)  # the clock action_test.yaml assumes

HEALTH_TESTS = yaml.safe_load((KIND_DIR / "health_test.yaml").read_text())["tests"]
ACTION_TESTS = yaml.safe_load((ACTIONS_DIR / "action_test.yaml").read_text())

SANDBOX = """
local fixed = ...
local real_date = os.date
local safe_os = {
  time = function(t) if t == nil then return fixed end return os.time(t) end,
  date = function(fmt, t) return real_date(fmt, t or fixed) end,
}
debug.setmetatable("", nil)  -- gopher-lua without the string library has no string methods
string, math, io, debug, coroutine = nil, nil, nil, nil, nil
os = safe_os
package.loaded.os = safe_os
package.loaded.string, package.loaded.math, package.loaded.io, package.loaded.debug = nil, nil, nil, nil
package.loaded.coroutine = nil
package.path, package.cpath = "", ""
"""


class Argo:
    """One fresh Lua state per script run, as Argo CD makes one per evaluation."""

    def __init__(self, now: datetime = FIXED_NOW) -> None:
        self.lua = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
        self.lua.execute(SANDBOX, calendar.timegm(now.utctimetuple()))

    def to_lua(self, value: Any) -> Any:
        if isinstance(value, dict):
            table = self.lua.table()
            for key, item in value.items():
                if item is not None:
                    table[key] = self.to_lua(item)
            return table
        if isinstance(value, list):
            table = self.lua.table()
            for i, item in enumerate(value, start=1):
                table[i] = self.to_lua(item)
            return table
        return value

    def run(self, script: str, obj: dict[str, Any]) -> Any:
        self.lua.globals().obj = self.to_lua(obj)
        return self.lua.execute(script)


def from_lua(value: Any, original: Any = None) -> Any:
    """A Lua result as JSON-like Python; an empty table takes the original's shape."""
    if lua51.lua_type(value) != "table":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    keys = list(value.keys())
    if not keys:
        return [] if isinstance(original, list) else {}
    if all(isinstance(k, int) for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
        originals = original if isinstance(original, list) else []
        return [from_lua(value[i], originals[i - 1] if i <= len(originals) else None) for i in range(1, len(keys) + 1)]
    originals = original if isinstance(original, dict) else {}
    return {str(k): from_lua(value[k], originals.get(k)) for k in keys}


def load(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(path.read_text())
    return body


def script(path: Path) -> str:
    return path.read_text()


# ------------------------------------------------------------------------------------ health
@pytest.mark.parametrize("case", HEALTH_TESTS, ids=[Path(t["inputPath"]).stem for t in HEALTH_TESTS])
def test_health(case: dict[str, Any]) -> None:
    obj = load(KIND_DIR / case["inputPath"])
    result = from_lua(Argo().run(script(KIND_DIR / "health.lua"), obj))
    assert result == case["healthStatus"]


def test_every_fixture_has_a_health_case() -> None:
    covered = {Path(t["inputPath"]).name for t in HEALTH_TESTS}
    assert covered == {p.name for p in (KIND_DIR / "testdata").glob("*.yaml")}


def test_health_covers_every_status_argo_cd_knows_of_but_missing_and_unknown() -> None:
    seen = {t["healthStatus"]["status"] for t in HEALTH_TESTS}
    assert seen == {"Progressing", "Healthy", "Degraded", "Suspended"}


# ----------------------------------------------------------------------------------- actions
@pytest.mark.parametrize(
    "case", ACTION_TESTS["discoveryTests"], ids=[Path(t["inputPath"]).stem for t in ACTION_TESTS["discoveryTests"]]
)
def test_discovery(case: dict[str, Any]) -> None:
    obj = load(ACTIONS_DIR / case["inputPath"])
    result = from_lua(Argo().run(script(ACTIONS_DIR / "discovery.lua"), obj))
    found = sorted(({"name": name, **props} for name, props in result.items()), key=lambda a: a["name"])
    assert found == sorted(case["result"], key=lambda a: a["name"])


@pytest.mark.parametrize(
    "case",
    ACTION_TESTS["actionTests"],
    ids=[f"{t['action']}-{Path(t['inputPath']).stem}" for t in ACTION_TESTS["actionTests"]],
)
def test_action(case: dict[str, Any]) -> None:
    obj = load(ACTIONS_DIR / case["inputPath"])
    result = from_lua(Argo().run(script(ACTIONS_DIR / case["action"] / "action.lua"), obj), obj)
    assert result == load(ACTIONS_DIR / case["expectedOutputPath"])


@pytest.mark.parametrize(
    "case",
    ACTION_TESTS["errorTests"],
    ids=[f"{t['action']}-{Path(t['inputPath']).stem}" for t in ACTION_TESTS["errorTests"]],
)
def test_action_refuses(case: dict[str, Any]) -> None:
    obj = load(ACTIONS_DIR / case["inputPath"])
    with pytest.raises(lua51.LuaError) as raised:
        Argo().run(script(ACTIONS_DIR / case["action"] / "action.lua"), obj)
    assert str(raised.value) == case["error"]


def test_every_action_has_a_script_a_test_and_a_discovery_entry() -> None:
    scripts = {p.parent.name for p in ACTIONS_DIR.glob("*/action.lua")}
    assert scripts == {"cancel", "suspend", "resume", "retry"}
    assert {t["action"] for t in ACTION_TESTS["actionTests"]} == scripts
    running = load(KIND_DIR / "testdata" / "running.yaml")
    assert set(from_lua(Argo().run(script(ACTIONS_DIR / "discovery.lua"), running))) == scripts


def test_retry_writes_the_current_time_in_rfc3339() -> None:
    now = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    obj = load(KIND_DIR / "testdata" / "failed.yaml")
    result = from_lua(Argo(now).run(script(ACTIONS_DIR / "retry" / "action.lua"), obj), obj)
    assert result["metadata"]["annotations"] == {"procjob.dev/retry": "2027-01-02T03:04:05Z"}


def test_the_sandbox_is_as_strict_as_argo_cd() -> None:
    """A script using the string library works in lupa's full Lua but fails in Argo CD; so here."""
    with pytest.raises(lua51.LuaError):
        Argo().run('return string.upper("x")', {})
    with pytest.raises(lua51.LuaError):
        Argo().run('return ("x"):upper()', {})
    assert Argo().run('local os = require("os"); return os.date("!%Y-%m-%dT%H:%M:%SZ")', {}) == "2026-03-01T12:00:00Z"


# ---------------------------------------------------------------------------------- fixtures
FIXTURES = sorted([*(KIND_DIR / "testdata").glob("*.yaml"), *(ACTIONS_DIR / "testdata").glob("*.yaml")])


@pytest.mark.parametrize("path", FIXTURES, ids=[p.name for p in FIXTURES])
def test_fixtures_parse_with_the_operator_models(path: Path) -> None:
    body = load(path)
    status = dict(body.get("status") or {})
    if "lastRetryRequest" not in ProcessingJobStatus.model_fields and "last_retry_request" not in (
        ProcessingJobStatus.model_fields
    ):
        status.pop("lastRetryRequest", None)  # the retry acknowledgement is newer than this model
    job = ProcessingJob.from_api({**body, "status": status})
    assert job.spec_error is None
    assert job.meta.name == "hello"


LIFECYCLE_TABLE = [
    (None, None),
    ("Unknown", "Running"),
    ("Unknown", "Queued"),
    ("True", "Succeeded"),
    ("False", "StageFailed"),
    ("False", "BackoffLimitExceeded"),
    ("False", "DeadlineExceeded"),
    ("False", "Cancelled"),
    ("False", "InvalidSpec"),
    ("False", "ReconcileError"),
]


@pytest.mark.parametrize(("status", "reason"), LIFECYCLE_TABLE)
def test_the_lua_copies_of_finished_and_retryable_match_the_operators(status: str | None, reason: str | None) -> None:
    """The Lua scripts cannot import procjob.models.lifecycle: this table pins them to it."""
    conditions = [] if status is None else [{"type": "Succeeded", "status": status, "reason": reason}]
    obj = {"metadata": {"name": "j", "generation": 1}, "spec": {}, "status": {"conditions": conditions}}
    actions = from_lua(Argo().run(script(ACTIONS_DIR / "discovery.lua"), obj))
    assert actions["cancel"]["disabled"] is finished(status)
    assert actions["retry"]["disabled"] is not retryable(status, reason)
    try:
        Argo().run(script(ACTIONS_DIR / "retry" / "action.lua"), obj)
        allowed = True
    except lua51.LuaError:
        allowed = False
    assert allowed is retryable(status, reason)
