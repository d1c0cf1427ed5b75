"""Two operator replicas with leader election, as local processes the suite supervises (as a
kubelet would: an exited replica is started again after RESTART_DELAY unless the suite holds it).

Each replica reaches the API server through its own listener of chaos.proxy (a kubeconfig that
points there) and PostgreSQL through the proxy's relay, and is named by POD_NAME (chaos-a,
chaos-b: the Lease holder identity starts with it). Every exit is recorded with its cause:
`killed` (the suite sent the signal), `failpoint` (exit 137 with a failpoint armed), `lost-lease`
(exit 70: the leader could not renew and stopped, as designed), `stopped` (SIGTERM by the suite),
or `other`, which no fault explains (a crash loop shows up there). /metrics is scraped every
second; the last scrape of every process is kept for I5.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
from bench.operatorproc import parse_metrics

from chaos.rigproc import ROOT

RESTART_DELAY = 1.0
LOST_LEASE_EXIT = 70
FAILPOINT_EXIT = 137


@dataclass
class Exit:
    replica: str
    start: int
    t: float
    code: int
    cause: str


@dataclass
class Replica:
    name: str
    argv: list[str]
    env: dict[str, str]
    metrics_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    started_at: float = 0.0
    restart_at: float = 0.0  # when an exited replica may start again
    failpoint: str | None = None  # to arm at the next start (then cleared)
    armed: str | None = None  # the failpoint of the running process
    expected: str | None = None  # the cause of the next exit, when the suite causes it
    held: bool = False  # not restarted while held
    _log: IO[bytes] | None = None

    @property
    def pod_name(self) -> str:
        return f"chaos-{self.name}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        env = dict(self.env)
        self.armed, self.failpoint = self.failpoint, None
        if self.armed:
            env["PROCJOB_FAILPOINTS"] = self.armed
        if self._log is None:
            self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(f"\n===== start {self.starts} failpoints={self.armed} =====\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(self.argv, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.started_at = time.time()

    def signal(self, sig: signal.Signals, cause: str) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.expected = cause
        self.proc.send_signal(sig)
        return True

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class Replicas:
    replicas: dict[str, Replica]
    exits: list[Exit] = field(default_factory=list)
    scrapes: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    peak_rss: dict[tuple[str, int], int] = field(default_factory=dict)  # VmHWM bytes per process
    stopping: bool = False

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas.values())

    def start_all(self) -> None:
        for replica in self:
            replica.start()

    async def ready(self, replica: Replica, within: float = 120.0) -> None:
        """Wait for /readyz 200 (caches synced; leading or standby)."""
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    url = f"http://127.0.0.1:{replica.metrics_port}/readyz"
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"operator replica {replica.name} not ready within {within:.0f}s")

    def _reap(self, replica: Replica) -> None:
        assert replica.proc is not None
        code = replica.proc.returncode
        if replica.expected is not None:
            cause = replica.expected
        elif code == FAILPOINT_EXIT and replica.armed:
            cause = "failpoint"
        elif code == LOST_LEASE_EXIT:
            cause = "lost-lease"
        else:
            cause = "other"
        self.exits.append(Exit(replica.name, replica.starts, round(time.time(), 3), int(code or 0), cause))
        replica.expected = None
        replica.armed = None
        replica.proc = None

    async def supervise(self) -> None:
        """Forever: reap exited replicas, start them again (unless held) after RESTART_DELAY."""
        while True:
            for replica in self:
                if replica.proc is not None and replica.proc.poll() is not None:
                    self._reap(replica)
                    replica.restart_at = time.time() + RESTART_DELAY
                if (
                    replica.proc is None
                    and not replica.held
                    and not self.stopping
                    and time.time() >= replica.restart_at
                ):
                    replica.start()
            await asyncio.sleep(0.1)

    async def scrape(self) -> None:
        """Forever: every second, each live replica's /metrics, kept per process (name, start)."""
        async with aiohttp.ClientSession() as session:
            while True:
                for replica in self:
                    if replica.pid is None:
                        continue
                    key = (replica.name, replica.starts)
                    self.peak_rss[key] = max(self.peak_rss.get(key, 0), vm_hwm(replica.pid))
                    url = f"http://127.0.0.1:{replica.metrics_port}/metrics"
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                            if resp.status == 200:
                                self.scrapes[key] = parse_metrics(await resp.text())
                await asyncio.sleep(1.0)

    def by_holder(self, holder: str | None) -> Replica | None:
        for replica in self.replicas.values():
            if holder and holder.startswith(replica.pod_name + "_"):
                return replica
        return None

    def stop_all(self, timeout: float = 30.0) -> None:
        self.stopping = True
        for replica in self:
            replica.held = True
            replica.signal(signal.SIGTERM, "stopped")
        deadline = time.monotonic() + timeout
        for replica in self:
            if replica.proc is None:
                continue
            try:
                replica.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                replica.proc.kill()
                replica.proc.wait(timeout=10)
            self._reap(replica)
            replica.close()


def vm_hwm(pid: int) -> int:
    """A process's peak resident set size (bytes), 0 when unknown."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def operator_argv(
    namespaces: list[str], lease_ns: str, metrics_port: int, timings: tuple[float, float, float], queue: tuple[int, int]
) -> list[str]:
    lease, renew, retry = timings
    argv = [sys.executable, "-m", "procjob.cli.main", "run"]
    for ns in namespaces:
        argv += ["--namespace", ns]
    return [
        *argv,
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(metrics_port),
        "--leader-elect",
        "--leader-election-namespace",
        lease_ns,
        "--leader-election-lease-seconds",
        str(lease),
        "--leader-election-renew-deadline-seconds",
        str(renew),
        "--leader-election-retry-seconds",
        str(retry),
        "--max-running-jobs",
        str(queue[0]),
        "--max-running-jobs-per-namespace",
        str(queue[1]),
        "--log-archive-max-bytes",
        "0",
    ]


def operator_env(name: str, kubeconfig: Path, dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROCJOB_", "KUBECONFIG"))}
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "POD_NAME": f"chaos-{name}",
            "PROCJOB_DATABASE_URL": dsn,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), env.get("PYTHONPATH", "")]),
        }
    )
    return env
