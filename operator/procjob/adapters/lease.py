"""coordination.k8s.io/v1 Leases: read, create and replace one, with optimistic concurrency.

The Lease is the election's only shared state (as in client-go's leaderelection): its holder,
when it was last renewed and for how long it holds. A replace carries the resourceVersion read,
so two candidates can never both write a renewal: the second gets 409 (Conflict).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from procjob.adapters.kube import NotFound
from procjob.models.lease import LeaseRecord
from procjob.models.timestamps import parse_time


class Requester(Protocol):
    async def request(self, method: str, path: str, *, body: Any = None, **params: str) -> Any: ...


def _path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{base}/{name}" if name else base


def _micro(when: datetime | None) -> str | None:
    """MicroTime as the API server writes it."""
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(body: dict[str, Any]) -> LeaseRecord:
    spec = body.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity"),
        renew_time=parse_time(spec.get("renewTime")),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        transitions=int(spec.get("leaseTransitions") or 0),
        acquire_time=parse_time(spec.get("acquireTime")),
        resource_version=(body.get("metadata") or {}).get("resourceVersion"),
    )


def _body(namespace: str, name: str, record: LeaseRecord) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if record.resource_version is not None:
        metadata["resourceVersion"] = record.resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.duration_seconds,
            "acquireTime": _micro(record.acquire_time),
            "renewTime": _micro(record.renew_time),
            "leaseTransitions": record.transitions,
        },
    }


async def get_lease(client: Requester, namespace: str, name: str) -> LeaseRecord | None:
    try:
        return _record(await client.request("GET", _path(namespace, name)))
    except NotFound:
        return None


async def write_lease(client: Requester, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
    """Create the Lease (no resourceVersion) or replace it (the resourceVersion read): raises
    Conflict when someone else wrote it first."""
    body = _body(namespace, name, record)
    if record.resource_version is None:
        return _record(await client.request("POST", _path(namespace), body=body))
    return _record(await client.request("PUT", _path(namespace, name), body=body))
