"""The HTTP(S) requests that tell whether a rig component is ready, with only the standard library.

Why no client library: the rig must come up before anything else works (it runs from the repo's
.venv with `cryptography` and `pyyaml` only), and a readiness probe is one GET.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from .config import LOOPBACK, RUN
from .pki import Pki


def admin_ssl() -> ssl.SSLContext:
    """TLS context that verifies the apiserver against the rig CA and presents the admin cert."""
    pki = Pki(RUN / "pki")
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    ctx.load_cert_chain(str(pki.crt("admin")), str(pki.key("admin")))
    return ctx


def insecure_ssl() -> ssl.SSLContext:
    """For the health ports of the controller-manager and scheduler: their serving certs are
    self-signed in memory; we only ever talk to 127.0.0.1."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def http(
    url: str,
    ctx: ssl.SSLContext | None = None,
    method: str = "GET",
    body: Any = None,
    content_type: str = "application/json",
    timeout: float = 3.0,
) -> tuple[int, bytes]:
    """One HTTP request; returns (status, body), status 0 when the connection failed."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (OSError, ssl.SSLError):
        return 0, b""


def api_url(ports: dict[str, int], path: str) -> str:
    """The URL of `path` on the rig's apiserver."""
    return f"https://{LOOPBACK}:{ports['apiserver']}{path}"


def apiserver_ready(ports: dict[str, int]) -> bool:
    """GET /readyz with the admin cert."""
    if not (RUN / "pki" / "admin.crt").exists():
        return False
    try:
        ctx = admin_ssl()
    except (OSError, ssl.SSLError):
        return False
    status, body = http(api_url(ports, "/readyz"), ctx)
    return status == 200 and body.strip() == b"ok"


def etcd_healthy(port: int) -> bool:
    """etcd's /health says {"health":"true"}."""
    status, body = http(f"http://{LOOPBACK}:{port}/health")
    return status == 200 and b'"true"' in body


def healthz_ok(port: int) -> bool:
    """The controller-manager's or scheduler's /healthz on its secure port answers 200."""
    return http(f"https://{LOOPBACK}:{port}/healthz", insecure_ssl())[0] == 200
