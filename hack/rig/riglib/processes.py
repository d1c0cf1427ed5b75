"""The rig's processes: start them detached, record them in state.json, wait on them, stop them.

Each process is recorded with its pid *and* its kernel start time, so that `down` never signals an
unrelated process that reused the pid, and a wait fails fast (with the last log line) when a
component dies during start-up instead of running into the deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .config import KUBECONFIG, LOCK, LOGS, LOOPBACK, RIG, RUN, STATE, RigError, knob, rel, say

GRACE_SECONDS = 10.0
T = TypeVar("T")


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of `pid`, None when it is not in the table."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def proc_starttime(pid: int) -> int | None:
    """The start time of a running `pid`; None when it is gone or a zombie."""
    stat = proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return stat[1]


def proc_rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (0 when unknown)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Proc:
    """One rig process as recorded in state.json."""

    name: str
    pid: int
    starttime: int
    port: int | None

    def alive(self) -> bool:
        """True while the very process we started runs (not a zombie, not a reused pid)."""
        return proc_starttime(self.pid) == self.starttime

    def in_process_table(self) -> bool:
        """True while the process we started is running or a zombie not yet collected."""
        stat = proc_stat(self.pid)
        return stat is not None and stat[1] == self.starttime


@dataclass
class State:
    """What `up` started; persisted in run/state.json after each start so that `down` finds it all."""

    ports: dict[str, int]
    procs: list[Proc] = field(default_factory=list)
    started_at: str = ""
    path: Path = STATE  # the real node keeps its own (riglib.node)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "started_at": self.started_at,
                    "ports": self.ports,
                    "procs": [p.__dict__ for p in self.procs],
                },
                indent=2,
            )
        )
        tmp.replace(self.path)

    @staticmethod
    def load(path: Path = STATE) -> State | None:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return State(
            ports={k: int(v) for k, v in raw.get("ports", {}).items()},
            procs=[Proc(**p) for p in raw.get("procs", [])],
            started_at=raw.get("started_at", ""),
            path=path,
        )


def spawn(
    state: State,
    name: str,
    argv: list[str],
    port: int | None,
    env: dict[str, str] | None = None,
    cwd: Path = RUN,
) -> Proc:
    """Start a component in its own session (so it outlives this process and the calling shell).

    Its output goes to .rig/logs/<name>.log; its pid is recorded in the state file immediately.
    """
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{name}.log").open("wb")
    with log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    starttime = proc_starttime(popen.pid)
    if starttime is None:  # exited (or became a zombie) at once
        code = popen.wait()
        raise RigError(f"{name} exited at once with code {code}; {last_log_line(name)}")
    proc = Proc(name=name, pid=popen.pid, starttime=starttime, port=port)
    state.procs.append(proc)
    state.save()
    return proc


def last_log_line(name: str) -> str:
    """The last non-empty line of a component's log, to name the cause of a failed start."""
    path = LOGS / f"{name}.log"
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return f"last log line: {lines[-1][:300]} (see {rel(path)})"
    return f"see {rel(path)}"


def reap(pid: int) -> None:
    """Collect a child's exit status if it is ours (when `up` cleans up after itself)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_order(procs: list[Proc]) -> list[list[Proc]]:
    """The groups `stop` signals one after the other: every client (last started first), then etcd.

    Clients go first and etcd last, so that the apiserver does not spend its grace period failing to
    reach its storage.
    """
    clients = [p for p in reversed(procs) if p.name != "etcd"]
    return [clients, [p for p in procs if p.name == "etcd"]]


def terminate_group(group: list[Proc]) -> None:
    """SIGTERM the live processes of one group, SIGKILL those still alive after GRACE_SECONDS."""
    live = [p for p in group if p.alive()]
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while live and time.monotonic() < deadline:
        for p in live:
            reap(p.pid)
        live = [p for p in live if p.alive()]
        if live:
            time.sleep(0.05)
    for p in live:
        say(f"{p.name} (pid {p.pid}) ignored SIGTERM for {GRACE_SECONDS:.0f}s; sending SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
    for p in live:
        reap(p.pid)


def stop(procs: list[Proc]) -> None:
    """SIGTERM the given processes (only those still the ones we started), SIGKILL after a grace."""
    for group in stop_order(procs):
        terminate_group(group)
    # Processes that outlived `up` are no longer our children: their parent is now PID 1, which may
    # collect exit statuses lazily. Wait briefly for that, so `down` returning means they are gone
    # from the process table (best effort; a zombie holds no port or memory).
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(p.in_process_table() for p in procs):
        for p in procs:
            reap(p.pid)
        time.sleep(0.1)


def remove_state() -> None:
    """Delete run/ (certs, kubeconfigs, etcd data, pids) and the admin kubeconfig; keep bin/ and logs/."""
    shutil.rmtree(RUN, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        KUBECONFIG.unlink()


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise up/down between concurrent callers (e.g. two test sessions starting at once)."""
    RIG.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def port_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on host:port (we can bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for(what: str, check: Callable[[], T | None], deadline: float, procs: list[Proc], interval: float = 0.1) -> T:
    """Poll `check` until it returns a value, failing fast if a watched process died meanwhile.

    Polls start at 0.1 s and back off to 0.5 s; the overall `up` deadline bounds them.
    """
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        for p in procs:
            if not p.alive():
                reap(p.pid)
                raise RigError(f"{p.name} exited during start-up; {last_log_line(p.name)}")
        if time.monotonic() >= deadline:
            raise RigError(f"timed out waiting for {what} (RIG_UP_TIMEOUT={knob('RIG_UP_TIMEOUT')}s); see {rel(LOGS)}/")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)
