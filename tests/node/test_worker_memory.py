"""The fetch worker streams 256 MiB through a real pod limited to 256Mi: its peak memory, read from the
pod's memory cgroup on the node while it runs, stays far below the limit (an OOM kill would fail the
job). The figures go to .rig/logs/worker-node-memory.json, beside `make bench-worker`'s (a process
on the host), for the README; nothing here asserts a speed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from tests.node.conftest import ROOT, InCluster
from tests.node.jobs import job, reason, stage_status
from tests.support.http import HttpServer, iter_payload
from tests.support.s3 import S3Server

pytestmark = pytest.mark.node
MIB = 1 << 20
SIZE = 256 * MIB
CGROUP = Path("/sys/fs/cgroup/memory/kubepods")


def pod_cgroup(uid: str) -> Path | None:
    found = [p for p in CGROUP.glob(f"**/pod{uid}") if p.is_dir()]
    return found[0] if found else None


class PeakSampler:
    """Polls the pod cgroup's memory.max_usage_in_bytes (the kernel's own high-water mark)."""

    def __init__(self, incluster: InCluster, name: str) -> None:
        self.incluster, self.name = incluster, name
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            for pod in self.incluster.kube.pods(self.incluster.namespace, f"procjob.dev/job={self.name}"):
                cgroup = pod_cgroup(pod["metadata"]["uid"])
                if cgroup is not None:
                    with contextlib.suppress(OSError, ValueError):
                        self.peak = max(self.peak, int((cgroup / "memory.max_usage_in_bytes").read_text()))
            time.sleep(0.1)


def test_the_fetch_worker_streams_256_mib_in_a_256mi_pod(
    incluster: InCluster, node_http: HttpServer, node_s3: S3Server
) -> None:
    fetch = {
        "name": "fetch",
        "uses": "fetch",
        "with": {"url": node_http.url(f"/image/{SIZE}.png"), "bucket": incluster.bucket, "key": "big/256.bin",
                 "maxBytes": SIZE, "contentTypes": ["image/*"]},
        "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "256Mi"}},
    }  # fmt: skip
    sampler = PeakSampler(incluster, "fetch-256")
    sampler.thread.start()
    t0 = time.monotonic()
    try:
        done = incluster.run(job("fetch-256", fetch, retry={"limit": 0}), timeout=600)
    finally:
        sampler.stop.set()
        sampler.thread.join()
    elapsed = time.monotonic() - t0
    assert reason(done) == "Succeeded", done["status"]
    digest = hashlib.sha256()
    for chunk in iter_payload(SIZE):
        digest.update(chunk)
    outputs = stage_status(done, "fetch")["outputs"]
    assert (outputs["size"], outputs["sha256"]) == (SIZE, digest.hexdigest())
    assert 0 < sampler.peak < 256 * MIB  # measured, and the limit held (no OOM kill)
    attempt = stage_status(done, "fetch")["attempts"][0]
    result = {
        "size_mib": SIZE // MIB,
        "limit_mib": 256,
        "pod_cgroup_peak_mib": round(sampler.peak / MIB, 1),
        "job_seconds": round(elapsed, 1),
        "attempt": {k: attempt.get(k) for k in ("createTime", "startTime", "finishTime")},
    }
    (ROOT / ".rig" / "logs" / "worker-node-memory.json").write_text(json.dumps(result, indent=2))
    print(f"\n[real node] fetch of 256 MiB in a 256Mi pod: {json.dumps(result)}")
