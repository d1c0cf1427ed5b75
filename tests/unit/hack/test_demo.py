"""The demo's `kubectl apply` of the examples: retried while kubectl's discovery does not know the
CRD it has just seen Established, and only then."""

from __future__ import annotations

import subprocess

import pytest
from hack import demo

LAG = 'error: resource mapping not found for name: "hello" namespace: "demo" from "examples/hello.yaml": '
LAG += 'no matches for kind "ProcessingJob" in version "procjob.dev/v1alpha1"\nensure CRDs are installed first'


def scripted(monkeypatch: pytest.MonkeyPatch, results: list[tuple[int, str]]) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []

    def run(*argv: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        code, stderr = results.pop(0)
        if check and code != 0:
            raise SystemExit(f"demo: {' '.join(argv[:3])} failed:\n{stderr}")
        return subprocess.CompletedProcess(argv, code, "", stderr)

    monkeypatch.setattr(demo, "run", run)
    return calls


def test_apply_is_retried_while_the_kind_is_unknown_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted(monkeypatch, [(1, LAG), (1, LAG), (0, "")])
    demo.apply_examples(pause=0)
    assert calls == [("kubectl", "apply", "-n", "demo", "-f", "examples/")] * 3


def test_another_failure_stops_the_demo_at_once_with_kubectls_words(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted(monkeypatch, [(1, 'The ProcessingJob "hello" is invalid: spec.stages: Required value')])
    with pytest.raises(SystemExit, match=r"spec\.stages: Required value"):
        demo.apply_examples(pause=0)
    assert len(calls) == 1


def test_the_last_try_fails_the_demo_with_the_discovery_error(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted(monkeypatch, [(1, LAG)] * 3)
    with pytest.raises(SystemExit, match="ensure CRDs are installed first"):
        demo.apply_examples(tries=3, pause=0)
    assert len(calls) == 3
