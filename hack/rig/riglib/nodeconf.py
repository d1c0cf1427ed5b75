"""The real node's settings: where its state lives under .rig/node/, its knobs, its names and addresses.

Why a real node beside kwok: kwok fakes a kubelet, so no kwok test can see what a real container does
(the image, the worker, signals, memory limits, logs). The node is one real kubelet with its own
containerd, joined to the rig's control plane; kwok keeps serving the breadth and scale tests.

Why the real node is the tainted one (not kwok's): every kwok-tier test, benchmark and the demo then
runs unchanged while the node is up; a pod opts into real containers with the toleration and node
selector below (the chart's `nodeSelector`/`tolerations`, a job's `podTemplate`).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from .config import LOGS, RIG, SERVICE_CIDR, RigError

NODE_DIR = RIG / "node"
NODE_NAME = "rig-real-0"
# Pods that should run real containers select this label and tolerate this taint.
REAL_LABEL = ("rig.procjob.dev/node", "real")
REAL_TAINT = {"key": "rig.procjob.dev/node", "value": "real", "effect": "NoSchedule"}
PAUSE_IMAGE = "localhost/pause:rig"

# name -> (default, meaning); read on `node-up`, recorded in the node's state so `node-down` does not
# depend on the caller's environment.
NODE_KNOBS: dict[str, tuple[str, str]] = {
    "RIG_NODE_SUBNET": ("10.213.0.0/24", "the node's bridge subnet (pods and the gateway; private, unrouted)"),
    "RIG_NODE_BRIDGE": ("pjrig0", "the Linux bridge the node's pods attach to (created and removed by the rig)"),
    "RIG_KUBELET_PORT": ("10250", "the kubelet's API port, on the bridge gateway address"),
    "RIG_KUBELET_HEALTHZ_PORT": ("10248", "the kubelet's /healthz port on 127.0.0.1"),
    "RIG_NODE_API_PORT": ("6443", "the API server's forwarder for pods, on the bridge gateway address"),
    "RIG_NODE_DNS_PORT": ("53", "cluster DNS (CoreDNS) on the bridge gateway address"),
    "RIG_NODE_UP_TIMEOUT": ("180", "seconds `node-up` waits for the node to become Ready"),
}


def node_knob(name: str) -> str:
    return os.environ.get(name, NODE_KNOBS[name][0])


@dataclass(frozen=True)
class NodeNet:
    """The node's addresses: its bridge, the gateway (the host's address on it) and the ports there."""

    bridge: str
    subnet: str
    kubelet_port: int
    healthz_port: int
    api_port: int
    dns_port: int

    @property
    def gateway(self) -> str:
        """The first address of the subnet: the host's address on the bridge, where pods find the rig."""
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    @staticmethod
    def from_knobs() -> NodeNet:
        subnet = node_knob("RIG_NODE_SUBNET")
        try:
            net = ipaddress.ip_network(subnet)
        except ValueError:
            raise RigError(f"RIG_NODE_SUBNET={subnet!r} is not a network (e.g. 10.213.0.0/24)") from None
        if net.version != 4 or not net.is_private or not 16 <= net.prefixlen <= 28:
            raise RigError(f"RIG_NODE_SUBNET={subnet} must be a private IPv4 network between /16 and /28")
        if net.overlaps(ipaddress.ip_network(SERVICE_CIDR)):
            raise RigError(f"RIG_NODE_SUBNET={subnet} overlaps the rig's service range {SERVICE_CIDR}")
        bridge = node_knob("RIG_NODE_BRIDGE")
        if not (0 < len(bridge) <= 15 and bridge.replace("-", "").isalnum()):
            raise RigError(f"RIG_NODE_BRIDGE={bridge!r} is not an interface name (1-15 letters, digits, '-')")
        ports = {}
        for knob in ("RIG_KUBELET_PORT", "RIG_KUBELET_HEALTHZ_PORT", "RIG_NODE_API_PORT", "RIG_NODE_DNS_PORT"):
            raw = node_knob(knob)
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise RigError(f"{knob}={raw!r} is not a port")
            ports[knob] = int(raw)
        return NodeNet(
            bridge=bridge,
            subnet=str(net),
            kubelet_port=ports["RIG_KUBELET_PORT"],
            healthz_port=ports["RIG_KUBELET_HEALTHZ_PORT"],
            api_port=ports["RIG_NODE_API_PORT"],
            dns_port=ports["RIG_NODE_DNS_PORT"],
        )


@dataclass(frozen=True)
class NodePaths:
    """Everything the node writes, under one directory (the default: .rig/node)."""

    root: Path = NODE_DIR

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def undo(self) -> Path:
        """What node-up changed on the host (bridge, iptables chains, sysctls), for node-down."""
        return self.root / "undo.json"

    @property
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def kubelet(self) -> Path:
        """The kubelet's --root-dir (pod volumes are mounted under it)."""
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"

    def log(self, name: str) -> Path:
        return LOGS / f"{name}.log"
