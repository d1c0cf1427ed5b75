"""A thin Kubernetes API client on aiohttp: pods, ProcessingJob status, finalizers, Events.

kopf watches; this client writes. It is deliberately small (JSON dicts in, JSON dicts out) and
fast: aiohttp is what kopf already uses, and it posts several times more objects per second than
the generated clients on the same core (see shared research, kopf.md §7).

Errors: every non-2xx answer raises `ApiError` (status, reason, message); `Conflict` (409) and
`NotFound` (404) are subclasses because the controller treats them as outcomes, not failures.
Network errors and 5xx/429 propagate as `ApiError`/`aiohttp.ClientError`: the controller requeues.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from procjob.models.job import API_VERSION, GROUP, KIND, LABEL_JOB_UID, PLURAL, VERSION

JOBS = f"/apis/{GROUP}/{VERSION}"
FINISHED_PODS = "status.phase!=Pending,status.phase!=Running"  # a field selector: pods that ended


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Conflict(ApiError):
    """409: AlreadyExists on create, or a stale resourceVersion on update."""


class NotFound(ApiError):
    """404."""


class NotLeading(ConnectionError):
    """A write refused before it was sent: with leader election, this replica does not lead (or
    no longer may, by its own clock). A connection error to its callers: retried, never sent."""


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to authenticate (from kopf's login, or a kubeconfig)."""

    server: str
    ca_path: str | None = None
    ca_data: str | None = None  # base64 PEM, as in kubeconfig
    insecure: bool = False
    token: str | None = None
    certificate_path: str | None = None
    certificate_data: str | None = None
    private_key_path: str | None = None
    private_key_data: str | None = None


def _pem(data: str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return raw if raw.lstrip().startswith(b"-----BEGIN") else base64.b64decode(raw)


def ssl_context(creds: Credentials) -> ssl.SSLContext | bool:
    if not creds.server.startswith("https"):
        return False
    ctx = ssl.create_default_context()
    if creds.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if creds.ca_path:
        ctx.load_verify_locations(cafile=creds.ca_path)
    elif creds.ca_data:
        ctx.load_verify_locations(cadata=_pem(creds.ca_data).decode())
    cert = creds.certificate_path
    key = creds.private_key_path
    if creds.certificate_data or creds.private_key_data:
        # ssl wants files for a client certificate: write them to a private directory, load, remove.
        with tempfile.TemporaryDirectory(prefix="procjob-tls-") as tmp:
            if creds.certificate_data:
                cert = os.path.join(tmp, "client.crt")
                with open(cert, "wb") as fh:
                    fh.write(_pem(creds.certificate_data))
            if creds.private_key_data:
                key = os.path.join(tmp, "client.key")
                with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as fh:
                    fh.write(_pem(creds.private_key_data))
            if cert:
                ctx.load_cert_chain(cert, key)
    elif cert:
        ctx.load_cert_chain(cert, key)
    return ctx


async def _api_error(resp: aiohttp.ClientResponse) -> ApiError:
    """The ApiError (Conflict, NotFound) an answer that is not a success means."""
    try:
        problem = await resp.json(content_type=None)
    except (aiohttp.ContentTypeError, ValueError):
        problem = {"message": (await resp.text(errors="replace"))[:500]}
    if not isinstance(problem, dict):
        problem = {"message": str(problem)[:500]}
    error = {409: Conflict, 404: NotFound}.get(resp.status, ApiError)
    return error(resp.status, str(problem.get("reason", resp.reason)), str(problem.get("message", "")))


class KubeClient:
    """The operator's writes to the API server (and the reads of pod logs for their archive)."""

    def __init__(
        self,
        creds: Credentials,
        *,
        connections: int = 64,
        timeout: float = 30.0,
        on_request: Callable[[str], None] | None = None,
        fence: Callable[[], bool] | None = None,
    ) -> None:
        self.server = creds.server.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "procjob-operator"}
        if creds.token:
            headers["Authorization"] = f"Bearer {creds.token}"
        connector = aiohttp.TCPConnector(ssl=ssl_context(creds), limit=connections)
        self.session = aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        )
        self.requests: dict[str, int] = {}  # verb -> count, for benchmarks
        self.on_request = on_request  # e.g. a metrics counter
        # Asked right before each of the writes below (not the Lease's, not the reviews'): with
        # leader election, whether this replica still leads (controller.leadership).
        self.fence = fence

    def _fenced(self) -> None:
        if self.fence is not None and not self.fence():
            raise NotLeading("this replica does not lead: the write was not sent")

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        accept: str | None = None,
        **params: str,
    ) -> Any:
        """One API call; its JSON answer. `accept` asks for another representation of the resource
        (e.g. a list of the objects' metadata alone)."""
        return await self._call(method, path, body, content_type, accept, params, json.loads)

    async def get_page(self, path: str, params: dict[str, str], *, accept: str, loads: Callable[[str], Any]) -> Any:
        """A GET whose answer `loads` decodes: `controller.sync`'s LIST pages, metadata only, decoded
        without what it never reads."""
        return await self._call("GET", path, None, "application/json", accept, params, loads)

    async def _call(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str,
        accept: str | None,
        params: dict[str, str],
        loads: Callable[[str], Any],
    ) -> Any:
        self.requests[method] = self.requests.get(method, 0) + 1
        if self.on_request is not None:
            self.on_request(method)
        headers = {"Content-Type": content_type} if body is not None else {}
        if accept is not None:
            headers["Accept"] = accept
        async with self.session.request(
            method, self.server + path, json=body, headers=headers or None, params=params or None
        ) as resp:
            if resp.status < 300:
                return await resp.json(content_type=None, loads=loads)
            raise await _api_error(resp)

    async def stream_pod_log(
        self, namespace: str, name: str, params: dict[str, str], *, seconds: float, chunk: int = 65536
    ) -> AsyncGenerator[bytes, None]:
        """The bytes of `pods/log` (params: container, tailLines, ...) as they arrive, in chunks of
        at most `chunk`; the whole read ends within `seconds` (TimeoutError). Close the generator
        (contextlib.aclosing) to stop early."""
        self.requests["GET"] = self.requests.get("GET", 0) + 1
        if self.on_request is not None:
            self.on_request("GET")
        url = f"{self.server}/api/v1/namespaces/{namespace}/pods/{name}/log"
        async with self.session.get(
            url, params=params, headers={"Accept": "*/*"}, timeout=aiohttp.ClientTimeout(total=seconds)
        ) as resp:
            if resp.status >= 300:
                raise await _api_error(resp)
            async for data in resp.content.iter_chunked(chunk):
                yield data

    # ---------------------------------------------------------------------------------- pods
    async def create_pod(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        self._fenced()
        result: dict[str, Any] = await self.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=manifest)
        return result

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        except NotFound:
            return None
        return result

    async def delete_pod(
        self, namespace: str, name: str, uid: str | None = None, *, grace_seconds: int | None = None
    ) -> bool:
        """Delete a pod (only that incarnation when `uid` is given). False when already gone.

        `grace_seconds=0` forces it: the API object goes at once, whatever its node says."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        if uid:
            body["preconditions"] = {"uid": uid}
        self._fenced()
        try:
            await self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body=body)
        except (NotFound, Conflict):
            return False
        return True

    async def delete_finished_pods(self, namespace: str, job_uid: str) -> None:
        """Delete a job's finished pods with one request: every pod in `namespace` labelled with the
        job's UID whose phase is neither Pending nor Running (a DeleteCollection; none is no error)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        selectors = {"labelSelector": f"{LABEL_JOB_UID}={job_uid}", "fieldSelector": FINISHED_PODS}
        self._fenced()
        await self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods", body=body, **selectors)

    async def list_all(self, path: str, *, label_selector: str | None = None, page: int = 500) -> list[dict[str, Any]]:
        """Every item of a collection, fetched in pages."""
        items: list[dict[str, Any]] = []
        params = {"limit": str(page)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            result = await self.request("GET", path, **params)
            items.extend(result.get("items") or [])
            token = (result.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    # ---------------------------------------------------------------------------------- jobs
    def job_path(self, namespace: str, name: str) -> str:
        return f"{JOBS}/namespaces/{namespace}/{PLURAL}/{name}"

    async def delete_job(self, namespace: str, name: str, uid: str) -> bool:
        """Delete a ProcessingJob — only that incarnation (UID precondition); its pods go with it
        (owner references). False when it is already gone or was replaced."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        body["preconditions"] = {"uid": uid}
        self._fenced()
        try:
            await self.request("DELETE", self.job_path(namespace, name), body=body)
        except (NotFound, Conflict):
            return False
        return True

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.request("GET", self.job_path(namespace, name))
        except NotFound:
            return None
        return result

    async def replace_status(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT the status subresource: replaces the whole status; 409 if resourceVersion is stale."""
        meta = body["metadata"]
        path = self.job_path(meta["namespace"], meta["name"]) + "/status"
        self._fenced()
        result: dict[str, Any] = await self.request("PUT", path, body=body)
        return result

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of the job (e.g. finalizers). Include metadata.resourceVersion to make it conditional."""
        self._fenced()
        result: dict[str, Any] = await self.request(
            "PATCH", self.job_path(namespace, name), body=patch, content_type="application/merge-patch+json"
        )
        return result

    # -------------------------------------------------------------------------------- events
    async def post_event(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        type_: str,
        reason: str,
        message: str,
        now: datetime,
        component: str = "procjob-operator",
        instance: str = "",
    ) -> None:
        stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": name,
                "namespace": namespace,
                "uid": uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": stamp[:19] + "Z",
            "lastTimestamp": stamp[:19] + "Z",
            "eventTime": stamp,
            "count": 1,
            "action": reason,
            "reportingComponent": component,
            "reportingInstance": instance or component,
            "source": {"component": component},
        }
        self._fenced()
        await self.request("POST", f"/api/v1/namespaces/{namespace}/events", body=event)

    # ------------------------------------------------------------------ reviews (history API)
    async def token_review(self, token: str) -> dict[str, Any]:
        """POST a TokenReview: the API server says whether `token` is valid and whose it is.

        No audiences are named, so the API server checks the token against its own: the token a
        user's kubeconfig holds for the API server is the one accepted. Returns the review's status
        (`authenticated`, `user`, `error`)."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        result = await self.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body)
        status: dict[str, Any] = result.get("status") or {}
        return status

    async def subject_access_review(self, spec: dict[str, Any]) -> dict[str, Any]:
        """POST a SubjectAccessReview with this `spec` (user, groups, uid, extra and the
        resourceAttributes asked about): may that user do it? Returns the review's status
        (`allowed`, `denied`, `reason`)."""
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        result = await self.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=body)
        status: dict[str, Any] = result.get("status") or {}
        return status
