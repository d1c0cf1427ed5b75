"""The operator as a separate process, started as tests/support/operator.py does, with its costs measured.

`procjob run --namespace NS --metrics-host 127.0.0.1 --metrics-port P` with KUBECONFIG (the chart's
ServiceAccount's token in the bench runs, bench/identity.py) and PYTHONPATH=operator; optionally
under cProfile (`python -m cProfile -o FILE -m procjob.cli.main run`),
which writes its profile when the operator exits on SIGTERM. A background thread samples the
process's RSS (its peak, and a timeline: the highest sample of each `TIMELINE_SECONDS`); CPU seconds
come from psutil's cpu_times (user + system) at marks the harness sets.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import psutil

from bench.api import BenchError
from bench.rigctl import KUBECONFIG, ROOT

MIB = 1024 * 1024
SAMPLE_SECONDS = 0.2
TIMELINE_SECONDS = 10.0  # RSS timeline: one point per this many seconds (the highest sample in it)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (labels as exposed, for exact lookups)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            values[match[1] + (match[2] or "")] = float(match[3])
    return values


class OperatorProcess:
    def __init__(
        self,
        namespace: str,
        log_path: Path,
        *,
        workers: int | None,
        database_url: str | None,
        profile_out: Path | None = None,
        variants: tuple[str, ...] = (),
        events: str | None = None,
        kubeconfig: Path = KUBECONFIG,
    ) -> None:
        self.port = free_port()
        prefix = [sys.executable]
        if profile_out is not None:
            prefix += ["-m", "cProfile", "-o", str(profile_out)]
        entry = ["procjob.cli.main"]
        if variants:  # bench/operator_variants.py: measure a proposed fix without editing operator/
            entry = ["bench.operator_variants", "--variants", ",".join(variants), "--"]
        self.argv = [
            *prefix,
            "-m",
            *entry,
            "run",
            "--namespace",
            namespace,
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(self.port),
        ]
        if workers is not None:
            self.argv += ["--workers", str(workers)]
        if events is not None:
            self.argv += ["--events", events]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROCJOB_")}
        env.update({"KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"})
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), str(ROOT), env.get("PYTHONPATH", "")])
        if database_url:
            env["PROCJOB_DATABASE_URL"] = database_url
        self.allocations = log_path.with_suffix(".tracemalloc.txt")
        env["BENCH_TRACEMALLOC_OUT"] = str(self.allocations)
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self.rss_peak = 0
        self.rss_timeline: list[tuple[float, int]] = []  # (seconds since ready, highest RSS in that step)
        self._log: IO[bytes] | None = None
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> None:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"the operator exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"the operator was not ready within {timeout:.0f}s: {self.tail()}")
            time.sleep(0.1)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        started = time.monotonic()
        step_end, step_high = started + TIMELINE_SECONDS, 0
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                assert self.ps is not None
                rss = int(self.ps.memory_info().rss)
            except psutil.Error:
                return
            self.rss_peak = max(self.rss_peak, rss)
            step_high = max(step_high, rss)
            if time.monotonic() >= step_end:
                self.rss_timeline.append((round(step_end - started, 1), step_high))
                step_end, step_high = step_end + TIMELINE_SECONDS, 0

    def timeline_mib(self) -> list[list[float]]:
        """The RSS timeline: [[seconds since ready, MiB], ...]."""
        return [[t, round(rss / MIB, 1)] for t, rss in list(self.rss_timeline)]

    def cpu_seconds(self) -> float:
        assert self.ps is not None
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def high_water_mark(self) -> int:
        """VmHWM (peak RSS over the process's life) from /proc, else the sampled peak."""
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return max(self.rss_peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        return self.rss_peak

    def rss(self) -> int:
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    def metrics(self) -> dict[str, float]:
        try:
            return parse_metrics(httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text)
        except httpx.HTTPError as exc:
            raise BenchError(f"cannot read the operator's /metrics: {exc}") from None

    def dump_allocations(self, out: Path, wait: float = 60.0) -> bool:
        """Ask a `tracemalloc` variant operator for its allocation sites (SIGUSR1); True when written."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        out.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if out.exists() and out.stat().st_size > 0:
                time.sleep(0.5)
                return True
            time.sleep(0.2)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 2000) -> str:
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
