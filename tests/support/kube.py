"""A small synchronous Kubernetes client for tests, and an independent watcher.

Tests assert the state of the world through the API server, never through the operator's own
code: this client is written separately (httpx, the rig's admin kubeconfig) on purpose. The
`Watcher` records every event of a resource with a millisecond client timestamp in a thread, so a
test can check invariants over the whole history (e.g. never more than N running jobs).
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

T = TypeVar("T")

JOBS = "/apis/procjob.dev/v1alpha1"


def _tls(kubeconfig: Path) -> tuple[str, ssl.SSLContext]:
    config = yaml.safe_load(kubeconfig.read_text())
    ctx_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    ssl_ctx = ssl.create_default_context()
    if "certificate-authority-data" in cluster:
        ssl_ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif "certificate-authority" in cluster:
        ssl_ctx.load_verify_locations(cafile=cluster["certificate-authority"])
    if "client-certificate-data" in user:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "c.crt"), Path(tmp, "c.key")
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            ssl_ctx.load_cert_chain(cert, key)
    elif "client-certificate" in user:
        ssl_ctx.load_cert_chain(user["client-certificate"], user["client-key"])
    return cluster["server"], ssl_ctx


class Kube:
    def __init__(self, kubeconfig: Path) -> None:
        self.server, self.ssl = _tls(kubeconfig)
        self.http = httpx.Client(base_url=self.server, verify=self.ssl, timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
        ok404: bool = False,
    ) -> Any:
        headers = {"Content-Type": content_type} if content_type else None
        resp = self.http.request(method, path, json=json_body, headers=headers, params=params)
        if ok404 and resp.status_code == 404:
            return None
        if resp.status_code >= 300:
            raise ApiFailure(resp.status_code, resp.text)
        return resp.json()

    # ---------------------------------------------------------------------------------- jobs
    def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": "procjob.dev/v1alpha1", "kind": "ProcessingJob", **manifest}
        body.setdefault("metadata", {})["namespace"] = namespace
        result: dict[str, Any] = self.request("POST", f"{JOBS}/namespaces/{namespace}/processingjobs", json_body=body)
        return result

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.request(
            "GET", f"{JOBS}/namespaces/{namespace}/processingjobs/{name}", ok404=True
        )
        return result

    def jobs(self, namespace: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", f"{JOBS}/namespaces/{namespace}/processingjobs")["items"]
        return result

    def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PATCH",
            f"{JOBS}/namespaces/{namespace}/processingjobs/{name}",
            json_body=patch,
            content_type="application/merge-patch+json",
        )
        return result

    def delete_job(self, namespace: str, name: str) -> None:
        self.request("DELETE", f"{JOBS}/namespaces/{namespace}/processingjobs/{name}", ok404=True)

    # ---------------------------------------------------------------------------------- pods
    def pods(self, namespace: str, selector: str = "procjob.dev/job-uid") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )["items"]
        return result

    def delete_pod(self, namespace: str, name: str, *, force: bool = False) -> None:
        params = {"gracePeriodSeconds": "0"} if force else None
        self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", params=params, ok404=True)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.request(
            "GET", f"/api/v1/namespaces/{namespace}/events", params={"fieldSelector": f"involvedObject.name={name}"}
        )["items"]
        return items


class ApiFailure(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:2000]}")
        self.status = status
        self.text = text


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def condition(job: dict[str, Any] | None, type_: str = "Succeeded") -> dict[str, Any]:
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def finished(kube: Kube, namespace: str, name: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        job = kube.job(namespace, name)
        return job if condition(job).get("status") in ("True", "False") else None

    return check


@dataclass
class Seen:
    at: float  # time.time() when the client received it
    type: str
    object: dict[str, Any]


@dataclass
class Watcher:
    """Records every watch event of one collection in a background thread."""

    kube: Kube
    path: str
    params: dict[str, str] = field(default_factory=dict)
    events: list[Seen] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    error: str | None = None

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self.error:
            raise AssertionError(f"watcher could not start: {self.error}")
        return self

    def _run(self) -> None:
        rv = ""
        with httpx.Client(base_url=self.kube.server, verify=self.kube.ssl, timeout=None) as client:
            first = client.get(self.path, params=self.params)
            if first.status_code != 200:
                self.error = f"list {self.path}: {first.status_code} {first.text[:200]}"
                self._ready.set()
                return
            listed = first.json()
            rv = listed["metadata"]["resourceVersion"]
            for item in listed.get("items", []):
                self.events.append(Seen(time.time(), "ADDED", item))
            self._ready.set()
            while not self._stop.is_set():
                params = {
                    **self.params,
                    "watch": "1",
                    "resourceVersion": rv,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "30",
                }
                try:
                    with client.stream("GET", self.path, params=params) as resp:
                        for line in _lines(resp):
                            if self._stop.is_set():
                                return
                            event = json.loads(line)
                            obj = event.get("object") or {}
                            rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                            if event.get("type") == "BOOKMARK":
                                continue
                            if event.get("type") == "ERROR":
                                listed = client.get(self.path, params=self.params).json()
                                rv = listed["metadata"]["resourceVersion"]
                                continue
                            self.events.append(Seen(time.time(), event["type"], obj))
                except httpx.HTTPError:
                    time.sleep(0.2)

    def stop(self) -> list[Seen]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=35)
        return self.events


def _lines(resp: httpx.Response) -> Iterator[str]:
    for line in resp.iter_lines():
        if line.strip():
            yield line
