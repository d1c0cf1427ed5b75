"""The rig as the benchmark uses it: shared with test sessions, restarted only under the exclusive lock.

Test sessions hold a shared flock on .rig/sessions.lock while they use the rig (tests/support/rig.py);
the last one out may stop a rig a test session started. The benchmark does the same: it holds the
shared lock for its whole run, so nobody stops the rig under it. To restart the rig with other
controller-manager settings (B1 at upstream client QPS) it waits, with a deadline, for the exclusive
lock (no test session running), restarts, runs, and brings the rig back with its defaults.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import psutil

from bench.api import BenchError

ROOT = Path(__file__).resolve().parents[1]
RIG_PY = ROOT / "hack" / "rig" / "rig.py"
SESSIONS_LOCK = ROOT / ".rig" / "sessions.lock"
STATE = ROOT / ".rig" / "run" / "state.json"
KUBECONFIG = ROOT / ".rig" / "kubeconfig"
CRD = ROOT / "crds" / "processingjob.yaml"
KUBECTL = ROOT / ".rig" / "bin" / "kubectl"
UP_TIMEOUT = 900.0
RIG_KNOBS = ("RIG_KCM_QPS", "RIG_KCM_BURST")


def rig_py(command: str, *, env: dict[str, str] | None = None, timeout: float = UP_TIMEOUT) -> str:
    full_env = {k: v for k, v in os.environ.items() if k not in RIG_KNOBS}
    full_env.update(env or {})
    try:
        out = subprocess.run(
            [sys.executable, str(RIG_PY), command],
            cwd=ROOT,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"hack/rig/rig.py {command} did not finish within {timeout:.0f}s") from None
    if out.returncode != 0 and command != "status":
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-10:])
        raise BenchError(f"hack/rig/rig.py {command} failed:\n{tail}")
    return out.stdout if out.returncode == 0 else ""


def tool(argv: list[str], *, what: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """Run a command in the repo; its stdout, or BenchError naming `what` with the tail of stderr."""
    try:
        out = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} did not finish within {timeout:.0f}s") from None
    if out.returncode != 0:
        raise BenchError(f"{what} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout


def kubectl(*args: str, timeout: float = 120.0, stdin: str | None = None) -> str:
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
    try:
        out = subprocess.run(
            [str(KUBECTL), *args],
            cwd=ROOT,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"kubectl {' '.join(args)} did not finish within {timeout:.0f}s") from None
    if out.returncode != 0:
        raise BenchError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()[-500:]}")
    return out.stdout


class Rig:
    """Use of the rig for one benchmark run (a context manager holding the shared lock)."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self._lock: IO[str] | None = None
        self.kcm_settings = "rig default"
        self.exclusive = False  # True while this run holds the exclusive lock (test sessions wait for it)

    def __enter__(self) -> Rig:
        SESSIONS_LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = SESSIONS_LOCK.open("a")
        self._take(fcntl.LOCK_SH, 600.0, "the shared rig lock (a rig restart is in progress)")
        if not rig_py("status", timeout=60):
            self.log("rig: not up; starting it (hack/rig/rig.py up)")
            rig_py("up")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _take(self, mode: int, timeout: float, what: str) -> bool:
        assert self._lock is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock, mode | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.5)

    def restart(self, env: dict[str, str], *, wait: float, label: str) -> bool:
        """Restart the rig with `env` (RIG_* knobs) under the exclusive lock; False if the lock did not come."""
        self.log(f"rig: waiting up to {wait:.0f}s for the exclusive lock to restart it ({label})")
        if not self._take(fcntl.LOCK_EX, wait, "the exclusive rig lock"):
            self._take(fcntl.LOCK_SH, 600.0, "the shared rig lock")
            return False
        self.exclusive = True
        self.log(f"rig: restarting ({label})")
        rig_py("down", timeout=180)
        rig_py("up", env=env)
        self.kcm_settings = label
        return True

    def release_exclusive(self) -> None:
        """Back to the shared lock (after the exclusive phase)."""
        self._take(fcntl.LOCK_SH, 600.0, "the shared rig lock")
        self.exclusive = False

    @staticmethod
    def apply_crd(manifest: str | None = None) -> None:
        """Apply the CRD (crds/, or `manifest`: its text) and wait until the resource answers."""
        if manifest is None:
            kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
        else:
            kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)
        # No `kubectl wait`: it fails at once while a brand-new CRD has no conditions. The resource
        # answers once Established and its storage is up (it gives 429 for a moment after that).
        deadline = time.monotonic() + 180
        while True:
            try:
                kubectl("get", "processingjobs", "-A", timeout=20)
                return
            except BenchError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    @staticmethod
    def components() -> dict[str, psutil.Process]:
        """The rig's processes (etcd, kube-apiserver, ...) by name, for CPU accounting."""
        state = json.loads(STATE.read_text())
        found: dict[str, psutil.Process] = {}
        for proc in state.get("procs", []):
            try:
                found[proc["name"]] = psutil.Process(int(proc["pid"]))
            except psutil.Error:
                continue
        return found

    @staticmethod
    def foreign_load() -> list[str]:
        """Other users of the rig right now: test sessions and operators this benchmark did not start."""
        me = psutil.Process()
        mine = {me.pid, *(p.pid for p in me.children(recursive=True)), *(p.pid for p in me.parents())}
        found: list[str] = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.info["pid"] in mine:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            if "python" not in cmd or cmd.startswith("timeout"):
                continue
            if "pytest" in cmd:
                found.append(f"pytest ({proc.info['pid']})")
            elif "procjob.cli.main run" in cmd:
                found.append(f"operator ({proc.info['pid']})")
        return found

    def wait_quiet(self, seconds: float) -> list[str]:
        """Wait up to `seconds` until no other test session or operator runs; returns what still runs."""
        deadline = time.monotonic() + seconds
        others = self.foreign_load()
        if self.exclusive:
            return others  # other sessions are waiting for this run's lock: waiting for them would deadlock
        if others and seconds > 0:
            self.log(f"rig: waiting up to {seconds:.0f}s for other users to finish: {', '.join(others)}")
        while others and time.monotonic() < deadline:
            time.sleep(2)
            others = self.foreign_load()
        return others

    @staticmethod
    def versions() -> dict[str, str]:
        out: dict[str, str] = {}
        for name in ("kube-apiserver", "etcd", "kwok"):
            binary = ROOT / ".rig" / "bin" / name
            try:
                text = subprocess.run(
                    [str(binary), "--version"], capture_output=True, text=True, timeout=20, check=False
                ).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
            first = text.strip().splitlines()[0] if text.strip() else "?"
            match = re.search(r"v?(\d+\.\d+\.\d+)", first)
            out[name] = match[1] if match else first
        return out
