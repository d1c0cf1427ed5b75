"""A real S3 server for tests: versitygw with its POSIX backend on a temporary directory.

The binary comes from the rig's Go build (``hack/rig/build.sh s3`` links ``.rig/bin/versitygw``;
it is run here when the link is missing, a no-op when the cache is warm). The server listens on
127.0.0.1 on a free port with root keys made up per run and is stopped at the end of the session.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

REPO = Path(__file__).resolve().parents[2]
VERSITYGW = REPO / ".rig" / "bin" / "versitygw"
START_TIMEOUT = 30.0


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    process: subprocess.Popen[bytes]
    root: Path
    _client: S3Client | None = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """What a worker pod would get: the standard AWS variables plus path-style addressing."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "PROCJOB_S3_FORCE_PATH_STYLE": "true",
        }

    def client(self) -> S3Client:
        """A boto3 client with the root keys (one per server: creating clients is slow)."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> S3Client:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3}),
        )

    def create_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def versitygw_binary() -> Path:
    if not VERSITYGW.exists():
        subprocess.run([str(REPO / "hack" / "rig" / "build.sh"), "s3"], check=True)
    return VERSITYGW


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path, host: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"versitygw exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"versitygw did not listen on port {port} within {START_TIMEOUT}s")


def start_s3_server(region: str = "us-east-1", host: str = "127.0.0.1") -> S3Server:
    """Start versitygw (posix backend, a fresh temporary root) on `host` (the real node's pods reach
    it on the rig's bridge gateway); the caller stops it."""
    binary = versitygw_binary()
    root = Path(tempfile.mkdtemp(prefix="procjob-s3-"))
    (root / "data").mkdir()
    access_key, secret_key = f"test{secrets.token_hex(6)}", secrets.token_urlsafe(24)
    port = free_port(host)
    log = root / "versitygw.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "--access",
                access_key,
                "--secret",
                secret_key,
                "--region",
                region,
                "--port",
                f"{host}:{port}",
                "--keep-alive",
                "--quiet",
                "posix",
                str(root / "data"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = S3Server(f"http://{host}:{port}", access_key, secret_key, region, process, root)
    try:
        _wait_until_listening(process, port, log, host)
        server.client().list_buckets()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_s3_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket for one test."""
    return s3_server.create_bucket()
