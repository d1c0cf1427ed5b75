"""The plugin cannot drift from the operator on "finished" and "retryable".

One table of the Succeeded condition's (status, reason) and what it means goes through
procjob.models.lifecycle (the operator's answer) and through the plugin's decision points: what
`kubectl pj retry` refuses, what `cancel` and `suspend` refuse as already finished, and the word
`describe` and the error messages use for the outcome. tests/unit/test_argocd_lua.py pins the
Argo CD Lua copies to the same module.
"""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime
from typing import Any

import pytest

from procjob.cli import pj_commands
from procjob.cli.pj_errors import EXIT_OK, PluginError
from procjob.cli.pj_state import is_finished, is_retryable, state_of
from procjob.models import lifecycle

# (status, reason) of the Succeeded condition -> (finished, retryable); None: no condition yet.
TABLE: list[tuple[str | None, str | None, bool, bool]] = [
    (None, None, False, False),
    ("Unknown", "Queued", False, False),
    ("Unknown", "Running", False, False),
    ("Unknown", "BackoffWaiting", False, False),
    ("Unknown", "Suspended", False, False),
    ("True", "Succeeded", True, False),
    ("False", "StageFailed", True, True),
    ("False", "BackoffLimitExceeded", True, True),
    ("False", "DeadlineExceeded", True, True),
    ("False", "Cancelled", True, False),
    ("False", "InvalidSpec", True, False),
    ("False", "ReconcileError", True, False),
]


def body(status: str | None, reason: str | None) -> dict[str, Any]:
    conditions = [] if status is None else [{"type": lifecycle.SUCCEEDED, "status": status, "reason": reason}]
    return {
        "metadata": {"name": "j", "namespace": "ns", "generation": 1},
        "spec": {"stages": [{"name": "work"}]},
        "status": {"observedGeneration": 1, "conditions": conditions},
    }


class FakeApi:
    """The two calls the state-changing commands make, on one job; patches are recorded."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job_body = job
        self.patches: list[dict[str, Any]] = []

    def job(self, namespace: str, name: str) -> dict[str, Any]:
        return self.job_body

    def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(patch)
        return self.job_body


def run(command: pj_commands.Command, job: dict[str, Any]) -> tuple[bool, FakeApi]:
    """(whether the command made its request, the fake API)."""
    api = FakeApi(job)
    args = argparse.Namespace(job="j", no_wait=True, timeout=0.0)
    ctx = pj_commands.Context(
        args=args,
        connect=lambda: (api, "ns"),  # type: ignore[arg-type,return-value]
        out=io.StringIO(),
        clock=lambda: datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
    )
    try:
        assert command(ctx) == EXIT_OK
    except PluginError:
        assert api.patches == []
        return False, api
    return True, api


@pytest.mark.parametrize(("status", "reason", "finished", "retryable"), TABLE)
def test_the_operators_answers(status: str | None, reason: str | None, finished: bool, retryable: bool) -> None:
    assert lifecycle.finished(status) is finished
    assert lifecycle.retryable(status, reason) is retryable
    assert lifecycle.body_finished(body(status, reason)) is finished
    assert lifecycle.body_retryable(body(status, reason)) is retryable


@pytest.mark.parametrize(("status", "reason", "finished", "retryable"), TABLE)
def test_the_plugins_predicates_are_the_operators(
    status: str | None, reason: str | None, finished: bool, retryable: bool
) -> None:
    job = body(status, reason)
    assert is_finished(job) is finished
    assert is_retryable(job) is retryable


@pytest.mark.parametrize(("status", "reason", "finished", "retryable"), TABLE)
def test_retry_is_requested_exactly_when_the_operator_would_act_on_it(
    status: str | None, reason: str | None, finished: bool, retryable: bool
) -> None:
    requested, api = run(pj_commands.cmd_retry, body(status, reason))
    assert requested is retryable
    if requested:
        assert list(api.patches[0]["metadata"]["annotations"]) == ["procjob.dev/retry"]


@pytest.mark.parametrize("command", [pj_commands.cmd_cancel, pj_commands.cmd_suspend])
@pytest.mark.parametrize(("status", "reason", "finished", "retryable"), TABLE)
def test_cancel_and_suspend_are_refused_exactly_when_the_job_finished(
    command: pj_commands.Command, status: str | None, reason: str | None, finished: bool, retryable: bool
) -> None:
    requested, _ = run(command, body(status, reason))
    assert requested is not finished


@pytest.mark.parametrize(("status", "reason", "finished", "retryable"), TABLE)
def test_the_state_names_the_operators_outcome(
    status: str | None, reason: str | None, finished: bool, retryable: bool
) -> None:
    state = state_of(body(status, reason))
    result = lifecycle.outcome(status, reason)
    if result is None:
        assert not state.startswith(("Succeeded", "Failed", "Cancelled"))
    elif result == "Failed":
        assert state.startswith(f"Failed ({reason})")
    else:
        assert state.startswith(result)
