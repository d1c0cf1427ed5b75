"""The few Kubernetes API calls `kubectl pj` makes, on a small httpx client.

The job is read as plain JSON, so a plugin older or newer than the operator still reads the
fields it knows. The API's names are spelled here rather than imported from procjob.models (which
loads pydantic and the whole API model) to keep `kubectl pj` quick to start;
tests/unit/cli/test_pj_state.py keeps them equal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from procjob.cli.pj_connect import Access
from procjob.cli.pj_errors import ApiError, PluginError

GROUP = "procjob.dev"
VERSION = "v1alpha1"
PLURAL = "processingjobs"
LABEL_JOB_UID = f"{GROUP}/job-uid"
RETRY_ANNOTATION = f"{GROUP}/retry"
CONTAINER = "main"
LIST_PAGE = 500  # jobs per list request (the API server's `limit`; `continue` fetches the rest)


class Api:
    """get/list/patch processingjobs, list events, get pods/log: all that RBAC must grant."""

    def __init__(self, access: Access, *, transport: httpx.BaseTransport | None = None) -> None:
        self.access = access
        self.server = access.server
        self.http = httpx.Client(
            base_url=access.server,
            verify=access.verify,
            headers={"Accept": "application/json", "User-Agent": "kubectl-pj", **access.headers},
            timeout=httpx.Timeout(30.0, connect=10.0),
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Any:
        headers = {"Content-Type": content_type} if content_type else None
        try:
            resp = self.http.request(method, path, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise PluginError(f"cannot reach the API server at {self.server}: {exc}") from None
        if resp.status_code >= 300:
            raise _api_error(resp)
        return resp.json()

    @staticmethod
    def job_path(namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"

    def job(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = self.request("GET", self.job_path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                raise PluginError(f"processingjob {namespace}/{name} not found") from None
            raise
        return found

    def jobs(
        self, namespace: str | None, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """List jobs in a namespace (None: all namespaces), page by page."""
        path = (
            f"/apis/{GROUP}/{VERSION}/{PLURAL}"
            if namespace is None
            else f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        )
        params = {"limit": str(LIST_PAGE)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        items: list[dict[str, Any]] = []
        while True:
            page = self.request("GET", path, params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params = {**params, "continue": str(token)}

    def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self.request(
            "PATCH", self.job_path(namespace, name), body=patch, content_type="application/merge-patch+json"
        )
        return patched

    def events(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        found = self.request(
            "GET", f"/api/v1/namespaces/{namespace}/events", params={"fieldSelector": f"involvedObject.uid={uid}"}
        )
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    def stream_log(self, namespace: str, pod: str, params: Mapping[str, str]) -> Iterator[bytes]:
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        try:
            with self.http.stream("GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)) as resp:
                if resp.status_code >= 300:
                    resp.read()
                    raise _api_error(resp)
                yield from resp.iter_bytes()
        except httpx.HTTPError as exc:
            raise PluginError(f"cannot reach the API server at {self.server}: {exc}") from None


def _api_error(resp: httpx.Response) -> ApiError:
    try:
        problem = resp.json()
    except ValueError:
        problem = {"message": resp.text[:500].strip()}
    if not isinstance(problem, dict):
        problem = {"message": str(problem)[:500]}
    return ApiError(resp.status_code, str(problem.get("reason") or ""), str(problem.get("message") or ""))
