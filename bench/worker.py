"""Benchmark the fetch worker: stream 256 MiB from a local HTTP server into versitygw.

Runs `procjob worker fetch` as a subprocess (as a pod would), samples its RSS while it runs, and
writes throughput and peak RSS to bench/results/<date>-worker.json. The body is generated on the
fly by the test HTTP server, never held in memory at once. Exit 1 if the worker's peak RSS
reaches the limit (100 MiB) or the stored object is wrong.

    python -m bench.worker [--size-mib 256] [--entry cli|module]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from tests.support.http import HttpServer, iter_payload
from tests.support.s3 import S3Server, start_s3_server

MIB = 1024 * 1024
RSS_LIMIT_MIB = 100
SAMPLE_INTERVAL = 0.01
RESULTS = Path(__file__).resolve().parent / "results"


def worker_command(entry: str) -> list[str]:
    if entry == "cli":
        return [str(Path(sys.executable).with_name("procjob")), "worker", "fetch"]
    return [sys.executable, "-m", "procjob.worker", "fetch"]


def high_water_mark(pid: int) -> int | None:
    """VmHWM (peak resident set size, bytes) from /proc, when the platform has it."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_worker(command: list[str], env: dict[str, str]) -> tuple[int, float, int, int, str]:
    """Run the worker; (exit code, wall seconds, peak RSS bytes, samples, stderr)."""
    with tempfile.TemporaryFile(mode="w+") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        watched = psutil.Process(process.pid)
        peak, samples = 0, 0
        while process.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss, high_water_mark(process.pid) or 0)
                samples += 1
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                break
            time.sleep(SAMPLE_INTERVAL)
        code = process.wait()
        seconds = time.monotonic() - started
        stderr.seek(0)
        return code, seconds, peak, samples, stderr.read()


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in iter_payload(size):
        digest.update(chunk)
    return digest.hexdigest()


def bench(size: int, entry: str) -> dict[str, object]:
    http = HttpServer()
    s3: S3Server = start_s3_server()
    try:
        bucket = s3.create_bucket()
        with tempfile.TemporaryDirectory() as tmp:
            termination = Path(tmp) / "termination-log"
            params = {
                "url": http.url(f"/image/{size}.png"),
                "bucket": bucket,
                "key": "bench/object.png",
                "maxBytes": size,
            }
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROCJOB_"))}
            env.update(s3.env)
            env["PROCJOB_FETCH_ALLOWED_NETWORKS"] = "127.0.0.0/8"
            env["PROCJOB_TERMINATION_MESSAGE_PATH"] = str(termination)
            env["PROCJOB_STAGE_PARAMS"] = json.dumps(params)
            command = worker_command(entry)
            code, seconds, peak, samples, logs = run_worker(command, env)
            message = json.loads(termination.read_text()) if termination.exists() else {}
        if code != 0:
            raise SystemExit(f"worker exited {code}: {message}\n{logs[-3000:]}")
        stored = next(json.loads(line) for line in logs.splitlines() if '"event":"fetch.stored"' in line)
        correct = (
            message.get("size") == size
            and message.get("sha256") == expected_sha256(size)
            and not s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads")
        )
    finally:
        http.stop()
        s3.stop()
    peak_mib = peak / MIB
    return {
        "benchmark": "worker-fetch",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(Path(command[0]).name if i == 0 else part for i, part in enumerate(command)),
        "size_mib": size / MIB,
        "wall_seconds": round(seconds, 3),
        "throughput_mib_s": round(size / MIB / seconds, 1),
        "transfer_seconds": stored["seconds"],
        "transfer_mib_s": stored["mibPerSecond"],
        "peak_rss_mib": round(peak_mib, 1),
        "rss_limit_mib": RSS_LIMIT_MIB,
        "within_limit": peak_mib < RSS_LIMIT_MIB,
        "rss_samples": samples,
        "object_correct": correct,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="bytes to stream (MiB, default 256)")
    parser.add_argument(
        "--entry",
        choices=["cli", "module"],
        default="cli",
        help="run `procjob worker fetch` (cli, default) or `python -m procjob.worker fetch` (module)",
    )
    args = parser.parse_args(argv)
    result = bench(args.size_mib * MIB, args.entry)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{datetime.now(UTC).date().isoformat()}-worker.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(RESULTS.parent.parent)}", file=sys.stderr)
    return 0 if result["within_limit"] and result["object_correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
