"""The plugin's reading of a job's JSON (procjob.cli.pj_state) and what it must not load.

The commands against a real operator are in tests/integration/test_plugin.py; "finished" and
"retryable" are pinned to procjob.models.lifecycle in test_lifecycle_pinned.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from procjob.cli import pj_api
from procjob.cli.pj_errors import PluginError
from procjob.cli.pj_state import pick_attempt
from procjob.core.naming import pod_name
from procjob.core.podspec import CONTAINER
from procjob.models import job as job_model

ROOT = Path(__file__).resolve().parents[3]


def test_the_plugin_spells_the_api_as_the_models_do() -> None:
    assert (pj_api.GROUP, pj_api.VERSION, pj_api.PLURAL) == (job_model.GROUP, job_model.VERSION, job_model.PLURAL)
    assert pj_api.LABEL_JOB_UID == job_model.LABEL_JOB_UID
    assert pj_api.RETRY_ANNOTATION == job_model.ANNOTATION_RETRY
    assert pj_api.CONTAINER == CONTAINER


@pytest.mark.parametrize("module", ["procjob.cli.plugin", "procjob.cli.pj_commands"])
def test_the_plugin_does_not_load_kopf_pydantic_psycopg_or_kubernetes_on_import(module: str) -> None:
    """`kubectl pj --help` stays quick; `kubernetes` (with pydantic) is loaded when a command connects."""
    names = ("kopf", "pydantic", "psycopg", "kubernetes")
    code = f"import sys, {module}; print(sorted(m for m in {names!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "operator")},
    )
    assert out.stdout.strip() == "[]"


def _job_with_attempts() -> dict[str, Any]:
    """Stage work made 12 attempts; status lists only the latest 10 (3..12)."""
    listed = [
        {"attempt": n, "podName": f"work-{n}", "state": "Failed", "createTime": "2026-03-01T10:00:00Z"}
        for n in range(3, 13)
    ]
    return {
        "metadata": {"name": "flaky", "namespace": "demo", "uid": "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"},
        "spec": {"stages": [{"name": "fetch"}, {"name": "work"}]},
        "status": {
            "stages": [
                {
                    "name": "fetch",
                    "state": "Succeeded",
                    "attemptCount": 1,
                    "attempts": [{"attempt": 1, "podName": "f1"}],
                },
                {"name": "work", "state": "Failed", "attemptCount": 12, "attempts": listed},
            ]
        },
    }


def test_logs_picks_the_latest_attempt_of_the_last_stage_that_ran() -> None:
    assert pick_attempt(_job_with_attempts(), None, None) == ("work", 12, "work-12")


def test_logs_picks_a_listed_attempt_by_number_and_names_older_ones_with_the_pod_name_helper() -> None:
    body = _job_with_attempts()
    assert pick_attempt(body, "work", 5) == ("work", 5, "work-5")
    uid = body["metadata"]["uid"]
    assert pick_attempt(body, "work", 1) == ("work", 1, pod_name("flaky", uid, "work", 1))
    assert pick_attempt(body, "fetch", None) == ("fetch", 1, "f1")


@pytest.mark.parametrize(
    ("stage_name", "attempt", "message"),
    [
        ("nope", None, "processingjob demo/flaky has no stage 'nope' (stages: fetch, work)"),
        ("work", 13, "processingjob demo/flaky: stage work has no attempt 13 (attempts made: 12)"),
        ("work", 0, "processingjob demo/flaky: stage work has no attempt 0 (attempts made: 12)"),
    ],
)
def test_logs_refuses_unknown_stages_and_attempts(stage_name: str, attempt: int | None, message: str) -> None:
    with pytest.raises(PluginError) as raised:
        pick_attempt(_job_with_attempts(), stage_name, attempt)
    assert raised.value.message == message
