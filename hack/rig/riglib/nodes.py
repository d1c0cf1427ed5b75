"""The fake Nodes kwok plays the kubelet for: their manifest, their creation, their readiness."""

from __future__ import annotations

import json
import ssl
from typing import Any

from .config import FAKE_NODE_IP, NODE_ANNOTATION, NODE_LABEL, RigError, int_knob, knob
from .probes import api_url, http


def node_manifest(i: int, kubelet_port: int | None = None) -> dict[str, Any]:
    """A fake Node: managed by kwok (annotation), without taints, with generous allocatable; its
    kubelet port is kwok's kubelet API (pod logs), on its loopback InternalIP."""
    name = f"rig-node-{i}"
    resources = {
        "cpu": knob("RIG_NODE_CPU"),
        "memory": knob("RIG_NODE_MEMORY"),
        "pods": str(int_knob("RIG_NODE_PODS", 1)),
        "ephemeral-storage": "1Ti",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION[0]: NODE_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                NODE_LABEL[0]: NODE_LABEL[1],
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "spec": {},
        "status": {
            "allocatable": resources,
            "capacity": resources,
            # Gives pods a hostIP as a kubelet's node would; loopback, so never dialled off the machine.
            "addresses": [
                {"type": "InternalIP", "address": FAKE_NODE_IP},
                {"type": "Hostname", "address": name},
            ],
            **({"daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}} if kubelet_port else {}),
        },
    }


def create_nodes(ports: dict[str, int], ctx: ssl.SSLContext, count: int) -> None:
    """Create the fake Nodes rig-node-0... (an existing one is kept) and set their allocatable."""
    for i in range(count):
        manifest = node_manifest(i, ports.get("kwok"))
        status, body = http(api_url(ports, "/api/v1/nodes"), ctx, "POST", manifest)
        if status not in (200, 201, 409):
            raise RigError(f"creating Node {manifest['metadata']['name']} failed: HTTP {status} {body[:200]!r}")
        # Nodes keep status on create, but make the allocatable certain (kwok keeps what it finds).
        http(
            api_url(ports, f"/api/v1/nodes/{manifest['metadata']['name']}/status"),
            ctx,
            "PATCH",
            {"status": manifest["status"]},
            content_type="application/merge-patch+json",
        )


def nodes_ready(ports: dict[str, int], ctx: ssl.SSLContext, count: int) -> bool:
    """All fake Nodes Ready and untainted (the not-ready taint is gone), so pods schedule at once."""
    sel = f"{NODE_LABEL[0]}%3D{NODE_LABEL[1]}"
    status, body = http(api_url(ports, f"/api/v1/nodes?labelSelector={sel}"), ctx)
    if status != 200:
        return False
    items = json.loads(body).get("items", [])
    ready = 0
    for node in items:
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        if conds.get("Ready") == "True" and not node.get("spec", {}).get("taints"):
            ready += 1
    return ready >= count
