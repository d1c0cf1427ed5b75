"""The worker contract: stage dispatch, parameters, termination message, exit codes."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path

import pytest

from procjob.models.contract import MAX_OUTPUT_BYTES
from procjob.worker import errors
from procjob.worker.main import STAGES, error_message, main


@pytest.fixture
def termination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "termination-log"
    monkeypatch.setenv("PROCJOB_TERMINATION_MESSAGE_PATH", str(path))
    monkeypatch.delenv("PROCJOB_STAGE_PARAMS", raising=False)
    return path


def register(monkeypatch: pytest.MonkeyPatch, name: str, function: str) -> None:
    monkeypatch.setitem(STAGES, name, f"{__name__}:{function}")


def echo_stage(params: Mapping[str, object], env: Mapping[str, str]) -> dict[str, object]:
    return {"echo": dict(params)}


def permanent_stage(params: Mapping[str, object], env: Mapping[str, str]) -> dict[str, object]:
    raise errors.WrongContentType("text/html is not an image")


def transient_stage(params: Mapping[str, object], env: Mapping[str, str]) -> dict[str, object]:
    raise errors.SourceUnavailable("HTTP 503")


def crashing_stage(params: Mapping[str, object], env: Mapping[str, str]) -> dict[str, object]:
    raise KeyError("https://example.com/?X-Amz-Signature=secret")


def huge_stage(params: Mapping[str, object], env: Mapping[str, str]) -> dict[str, object]:
    return {"blob": "x" * MAX_OUTPUT_BYTES}


def sigterm_stage(params: Mapping[str, object], env: Mapping[str, str]) -> dict[str, object]:
    os.kill(os.getpid(), signal.SIGTERM)
    raise AssertionError("SIGTERM should have interrupted the stage")


@pytest.mark.parametrize(
    ("error", "code", "kind"),
    [
        pytest.param(errors.InvalidParams, 2, "permanent", id="invalid parameters are permanent"),
        pytest.param(errors.AddressRefused, 2, "permanent", id="an SSRF refusal is permanent"),
        pytest.param(errors.SourceRejected, 2, "permanent", id="a 4xx is permanent"),
        pytest.param(errors.WrongContentType, 2, "permanent", id="a wrong type is permanent"),
        pytest.param(errors.TooLarge, 2, "permanent", id="too large is permanent"),
        pytest.param(errors.StorageRejected, 2, "permanent", id="an S3 4xx is permanent"),
        pytest.param(errors.UsageError, 2, "permanent", id="bad usage is permanent"),
        pytest.param(errors.SourceUnavailable, 75, "transient", id="a 5xx or timeout is transient"),
        pytest.param(errors.StorageUnavailable, 75, "transient", id="S3 throttling is transient"),
        pytest.param(errors.Terminated, 75, "transient", id="SIGTERM is transient"),
    ],
)
def test_each_error_has_an_exit_code_and_a_kind(error: type[errors.WorkerError], code: int, kind: str) -> None:
    assert (error.exit_code, error.kind) == (code, kind)


def test_success_writes_the_outputs(monkeypatch: pytest.MonkeyPatch, termination: Path) -> None:
    register(monkeypatch, "echo", "echo_stage")
    monkeypatch.setenv("PROCJOB_STAGE_PARAMS", '{"a": 1}')
    assert main(["echo"]) == 0
    assert json.loads(termination.read_text()) == {"echo": {"a": 1}}


@pytest.mark.parametrize(
    ("function", "code", "kind", "text"),
    [
        pytest.param("permanent_stage", 2, "permanent", "text/html is not an image", id="permanent failure"),
        pytest.param("transient_stage", 75, "transient", "HTTP 503", id="transient failure"),
        pytest.param("crashing_stage", 1, "unknown", "internal error: KeyError", id="a bug exits 1"),
        pytest.param("huge_stage", 1, "unknown", "internal error: RuntimeError", id="outputs over 4 KiB are a bug"),
        pytest.param("sigterm_stage", 75, "transient", "terminated by SIGTERM", id="SIGTERM is transient"),
    ],
)
def test_failures_leave_an_error_message(
    monkeypatch: pytest.MonkeyPatch,
    termination: Path,
    capsys: pytest.CaptureFixture[str],
    function: str,
    code: int,
    kind: str,
    text: str,
) -> None:
    register(monkeypatch, "stage", function)
    assert main(["stage"]) == code
    assert json.loads(termination.read_text()) == {"error": text, "kind": kind}
    assert "X-Amz-Signature" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "params", "text"),
    [
        pytest.param([], None, "no stage given", id="no stage"),
        pytest.param(["nope"], None, "unknown stage 'nope'; known stages: fetch, checksum", id="an unknown stage"),
        pytest.param(["fetch", "extra"], None, "expected one stage", id="extra arguments"),
        pytest.param(["fetch"], "{not json", "PROCJOB_STAGE_PARAMS is not valid JSON", id="params not JSON"),
        pytest.param(["fetch"], "[1, 2]", "must be a JSON object, not list", id="params not an object"),
        pytest.param(["fetch"], "{}", "invalid parameters: url: Field required", id="fetch without parameters"),
    ],
)
def test_usage_errors_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    termination: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    params: str | None,
    text: str,
) -> None:
    if params is not None:
        monkeypatch.setenv("PROCJOB_STAGE_PARAMS", params)
    assert main(argv) == 2
    message = json.loads(termination.read_text())
    assert message["kind"] == "permanent"
    assert text in message["error"]
    assert text in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "usage: procjob worker STAGE" in capsys.readouterr().out


def test_an_unwritable_termination_path_is_logged_not_fatal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROCJOB_TERMINATION_MESSAGE_PATH", str(tmp_path / "missing" / "log"))
    register(monkeypatch, "echo", "echo_stage")
    assert main(["echo"]) == 0
    assert "worker.termination_message_failed" in capsys.readouterr().err


def test_a_long_error_is_cut_to_fit_4_kib() -> None:
    message = error_message("é" * 10_000, "transient")
    assert len(message.encode()) <= MAX_OUTPUT_BYTES
    decoded = json.loads(message)
    assert decoded["kind"] == "transient"
    assert decoded["error"].endswith("...")
