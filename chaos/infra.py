"""Starting and stopping what a run needs besides the rig: the proxies' and the observer's
processes, the namespaces, the extra kwok Node, the replicas' kubeconfigs, and reading back what
the observer, the proxy and PostgreSQL recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import aiohttp
import psycopg
import yaml
from bench.api import Api, ApiError, TransportError, poll
from bench.operatorproc import free_port, parse_metrics
from psycopg.rows import dict_row

from chaos.rigproc import ROOT

KUBECONFIG = ROOT / ".rig" / "kubeconfig"


class Process:
    """A helper process of the suite that prints `ready` once it serves; stopped with SIGTERM."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv, self.log_path = argv, log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, within: float = 120.0) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + within
        line = b""
        while time.monotonic() < deadline and self.proc.poll() is None:
            line = self.proc.stdout.readline()
            if line.strip() == b"ready":
                return
        self.stop()
        raise RuntimeError(f"{' '.join(self.argv[:3])} did not start: {self.log_path.read_text()[-800:]}")

    def stop(self, within: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
        return self.proc.returncode


def replica_kubeconfig(path: Path, port: int) -> Path:
    """A kubeconfig that points at the replica's proxy listener (plain HTTP on the loopback)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "chaos", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "chaos", "user": {}}],
        "contexts": [{"name": "chaos", "context": {"cluster": "chaos", "user": "chaos"}}],
        "current-context": "chaos",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def proxy_process(workdir: Path, api_ports: dict[str, int], pg_port: int, pg_upstream: int, control: int) -> Process:
    argv = [sys.executable, "-m", "chaos.proxy", "--kubeconfig", str(KUBECONFIG), "--control", str(control)]
    for name, port in api_ports.items():
        argv += ["--api", f"{name}={port}"]
    argv += ["--pg", f"{pg_port}={pg_upstream}", "--log", str(workdir / "requests.jsonl")]
    return Process(argv, workdir / "proxy.log")


def observer_process(workdir: Path, namespaces: list[str], lease_ns: str) -> Process:
    argv = [sys.executable, "-m", "chaos.observer", "--kubeconfig", str(KUBECONFIG), "--lease-namespace", lease_ns]
    for ns in namespaces:
        argv += ["--namespace", ns]
    argv += ["--out", str(workdir / "observer.jsonl")]
    return Process(argv, workdir / "observer.log")


def ports(count: int) -> list[int]:
    found: set[int] = set()
    while len(found) < count:
        found.add(free_port())
    return sorted(found)


async def add_node(api: Api, name: str) -> None:
    """A kwok-managed Node like the rig's (hack/rig/riglib/nodes.py), for the node-lost fault."""
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "1000"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "1000"},
        },
    }
    await api.create("/api/v1/nodes", body)

    async def ready() -> bool:
        node = await api.request("GET", f"/api/v1/nodes/{name}", ok404=True)
        conds = ((node or {}).get("status") or {}).get("conditions") or []
        taints = ((node or {}).get("spec") or {}).get("taints") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds) and not taints

    await poll(f"node {name} Ready and untainted", ready, 90)


async def remove_node(api: Api, name: str) -> None:
    with contextlib.suppress(ApiError, TransportError):
        await api.request("DELETE", f"/api/v1/nodes/{name}", ok404=True)


def read_jsonl(path: Path) -> list[Any]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def audit_rows(dsn: str) -> list[dict[str, Any]]:
    query = (
        "SELECT job_uid, seq, event_type, reason, stage, attempt, extract(epoch FROM occurred_at) AS occurred_at,"
        " detail FROM audit_events ORDER BY job_uid, seq"
    )
    with psycopg.connect(dsn, connect_timeout=10) as conn, conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(query))


async def scrape(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/metrics"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return parse_metrics(await resp.text())


async def sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
