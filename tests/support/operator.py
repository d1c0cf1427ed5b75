"""The operator as a real process against the rig, for e2e tests.

Fixtures:
- `crd` (session): applies crds/processingjob.yaml to the rig and waits until it is Established.
- `kube` (session): a `tests.support.kube.Kube` client with the rig's admin kubeconfig.
- `operator` (function): a factory `operator(namespace, *args, env=None) -> OperatorProcess` that
  starts `procjob run --namespace NS` and waits for /readyz; every process it started is stopped
  at the end of the test. `OperatorProcess.kill()` sends SIGKILL (crash tests), `.start()` starts
  it again with the same arguments, `.metrics()` reads /metrics, `.log()` returns its output.
- `rig_serves_pod_logs(rig)`: whether the rig's kwok serves pod logs (its kubelet API and Logs CRD,
  hack/rig since RIG_KWOK_PORT). On a rig started before that, the API server cannot reach a kubelet
  for kwok pods, so the operators started here get `PROCJOB_LOG_ARCHIVE_MAX_BYTES=0` (no log
  archive: podGC and TTLs would otherwise wait out --log-archive-wait-seconds), unless a test sets it.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.kube import Kube, wait_for
from tests.support.rig import Rig

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "processingjob.yaml"


@functools.cache
def _serves_pod_logs(kubeconfig: Path) -> bool:
    rig_env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{ROOT / '.rig' / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    crd = subprocess.run(
        ["kubectl", "get", "crd", "logs.kwok.x-k8s.io"], env=rig_env, capture_output=True, timeout=30, check=False
    )
    node = subprocess.run(
        ["kubectl", "get", "node", "rig-node-0", "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"],
        env=rig_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    port = int(node.stdout.strip() or 0) or 10250  # the API server's default kubelet port
    try:
        served = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        served = False
    return crd.returncode == 0 and served


def rig_serves_pod_logs(rig: Rig) -> bool:
    """Whether the API server can read kwok pods' logs (asked once per session)."""
    return _serves_pod_logs(rig.kubeconfig)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def crd_established(rig: Rig, name: str, timeout: float = 180.0) -> None:
    """Wait until a CRD is Established by polling its conditions: `kubectl wait` fails at once
    ("status.conditions accessor error") while a brand-new CRD has no conditions yet."""

    def established() -> bool:
        found = rig.kubectl("get", "crd", name, "-o", "json", check=False)
        if found.returncode != 0:
            return False
        conditions = json.loads(found.stdout).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    wait_for(f"CRD {name} Established", established, timeout=timeout)


@pytest.fixture(scope="session")
def crd(rig: Rig) -> Path:
    rig.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    crd_established(rig, "processingjobs.procjob.dev")
    # Established is not the end: the storage behind a new resource answers 429 for a moment.
    wait_for(
        "the ProcessingJob storage",
        lambda: rig.kubectl("get", "processingjobs", "-A", check=False).returncode == 0,
        timeout=60,
    )
    return CRD


@pytest.fixture(scope="session")
def kube(rig: Rig) -> Iterator[Kube]:
    client = Kube(rig.kubeconfig)
    yield client
    client.close()


@dataclass
class OperatorProcess:
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _logs: list[Any] = field(default_factory=list)

    def start(self, *, wait: bool = True) -> OperatorProcess:
        log = self.log_path.open("ab")
        self._logs.append(log)
        log.write(f"\n===== start {self.starts + 1} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.starts += 1
        if wait:
            wait_for("the operator's /readyz", self._ready, timeout=60, interval=0.1)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: a crash at whatever line it is on."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def get(self, path: str, *, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10, headers=headers)


@pytest.fixture
def operator(rig: Rig, crd: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    started: list[OperatorProcess] = []

    def start(namespace: str, *args: str, env: dict[str, str] | None = None) -> OperatorProcess:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "procjob.cli.main",
            "run",
            "--namespace",
            namespace,
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(port),
            *args,
        ]
        full_env = {**rig.env, "PYTHONUNBUFFERED": "1", **(env or {})}
        if not rig_serves_pod_logs(rig):
            full_env.setdefault("PROCJOB_LOG_ARCHIVE_MAX_BYTES", "0")
        full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), full_env.get("PYTHONPATH", "")])
        proc = OperatorProcess(argv, full_env, tmp_path / f"operator-{len(started)}.log", port)
        started.append(proc)
        return proc.start()

    yield start
    failed = getattr(request.node, "rep_call", None)
    for proc in started:
        proc.stop()
        if failed is not None and failed.failed:
            sys.stderr.write(f"\n--- operator log ({proc.log_path.name}) ---\n{proc.log()[-6000:]}\n")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
