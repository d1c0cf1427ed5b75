"""The rig's own processes (etcd, kube-apiserver, ...) as the suite faults them: by the pids that
`hack/rig/rig.py up` recorded in .rig/run/state.json, never by name.

`restart` starts a killed component again exactly as `up` did (its argv, environment and working
directory, read from /proc before the kill; output appended to its .rig/logs file, its own session)
and records the new pid and start time in state.json under the rig's lock, so `rig.py down` and
`status` keep finding it. Ports come from state.json too, so the suite works with whatever ports
the rig in this checkout uses.

The rig is shared: while a component is down on purpose, `rig.py status` says the rig is not up,
and a test session starting then runs `rig.py up`, which stops a "half-up" rig and starts another
under the suite (seen: a 30 s API server outage ended with the rig gone). `Outage` holds the lock
`up` and `down` take from the kill until the API server is ready again, so they wait and then find
the rig up; `ownership_kept` removes the test-session mark such a session leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
RIG = ROOT / ".rig"
STATE = RIG / "run" / "state.json"
LOCK = RIG / "rig.lock"
LOGS = RIG / "logs"
OWNED_BY_TESTS = RIG / "run" / "owned-by-test-session"  # tests/support/rig.py: "stop it when done"


class RigProcError(RuntimeError):
    pass


def state() -> dict[str, Any]:
    try:
        return dict(json.loads(STATE.read_text()))
    except (OSError, ValueError) as exc:
        raise RigProcError(f"cannot read {STATE}: {exc} (is the rig up?)") from None


def ports() -> dict[str, int]:
    return {k: int(v) for k, v in state().get("ports", {}).items()}


def _starttime(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


@dataclass
class Component:
    """A rig process as started: enough to start it again the same way."""

    name: str
    pid: int
    starttime: int
    argv: list[bytes]
    env: dict[bytes, bytes]
    cwd: str
    port: int | None = None

    def alive(self) -> bool:
        return _starttime(self.pid) == self.starttime

    def signal(self, sig: signal.Signals) -> None:
        if not self.alive():
            raise RigProcError(f"{self.name} (pid {self.pid}) is not running")
        os.kill(self.pid, sig)


def component(name: str) -> Component:
    for proc in state().get("procs", []):
        if proc["name"] == name:
            pid, start = int(proc["pid"]), int(proc["starttime"])
            if _starttime(pid) != start:
                raise RigProcError(f"{name}: the recorded pid {pid} is not the process the rig started")
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            env = dict(item.split(b"=", 1) for item in raw if b"=" in item)
            port = proc.get("port")
            return Component(name, pid, start, argv, env, os.readlink(f"/proc/{pid}/cwd"), port)
    raise RigProcError(f"the rig runs no {name}")


def kill(comp: Component, within: float = 30.0) -> None:
    """SIGKILL and wait until it has left the process table and its port is free again.

    A zombie is not enough: its thread group leader turns zombie while other threads still exit
    and hold the process's files, the listening socket included."""
    comp.signal(signal.SIGKILL)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(comp.pid, os.WNOHANG)  # our child (a component this suite started again)
        gone = _starttime(comp.pid) != comp.starttime and not Path(f"/proc/{comp.pid}/task").exists()
        if gone and (comp.port is None or port_free(comp.port)):
            return
        time.sleep(0.05)
    raise RigProcError(f"{comp.name} (pid {comp.pid}) did not go within {within:.0f}s")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Outage:
    """`async with Outage():` a component down on purpose: holds the rig's lock (the one `rig.py up`
    and `down` take) meanwhile, so a concurrent `up` waits and then finds the rig up again."""

    def __init__(self) -> None:
        self._lock: IO[str] | None = None

    async def __aenter__(self) -> Outage:
        RIG.mkdir(parents=True, exist_ok=True)
        self._lock = LOCK.open("a")
        await asyncio.to_thread(fcntl.flock, self._lock, fcntl.LOCK_EX)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


@contextlib.contextmanager
def ownership_kept() -> Iterator[None]:
    """A test session whose `rig.py status` met one of the suite's outages marks the rig as started by
    tests once its `up` returns (it found the rig up), and its teardown would later stop a rig it
    never started: a mark that was not there when the run began is removed when it ends."""
    before = OWNED_BY_TESTS.exists()
    try:
        yield
    finally:
        if not before:
            OWNED_BY_TESTS.unlink(missing_ok=True)


def restart(comp: Component, *, locked: bool = False) -> Component:
    """Start `comp` again as the rig did, and record it in state.json (`locked`: the caller holds
    the rig's lock, an `Outage`)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{comp.name}.log").open("ab") as log:
        popen = subprocess.Popen(
            comp.argv,
            env=comp.env,
            cwd=comp.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    start = _starttime(popen.pid)
    if start is None:
        raise RigProcError(f"{comp.name} exited at once with {popen.wait()}")
    if locked:
        _record(comp.name, popen.pid, start)
    else:
        with LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                _record(comp.name, popen.pid, start)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return Component(comp.name, popen.pid, start, comp.argv, comp.env, comp.cwd, comp.port)


def _record(name: str, pid: int, start: int) -> None:
    current = state()
    for proc in current.get("procs", []):
        if proc["name"] == name:
            proc["pid"], proc["starttime"] = pid, start
    tmp = STATE.with_suffix(".chaos.tmp")
    tmp.write_text(json.dumps(current, indent=2))
    tmp.replace(STATE)
