"""Where the rig lives (.rig/), the addresses it uses, and the environment knobs `up` reads.

One place for these so that every part agrees on them; the .rig/ layout and the knob names are
stable interfaces (tests, benchmarks and the README rely on them).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # hack/rig
ROOT = HERE.parents[1]
RIG = ROOT / ".rig"
BIN = RIG / "bin"
LOGS = RIG / "logs"
RUN = RIG / "run"
STATE = RUN / "state.json"
LOCK = RIG / "rig.lock"
KUBECONFIG = RIG / "kubeconfig"
STAGES = HERE / "stages"
CRDS = HERE / "crds"  # CRDs the rig's kwok watches (its Logs: which file is a kwok pod's log)
BUILD = HERE / "build.sh"

LOOPBACK = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first IP of SERVICE_CIDR: the `kubernetes` Service; in the serving cert
POD_CIDR = "10.244.0.0/16"  # kwok's fake pod IPs; its default /24 runs out after 254 pods
# The fake Nodes' InternalIP: loopback, so that the apiserver's kubelet client (logs, exec) never
# dials an address off this machine for a kwok pod (nothing listens there: the request fails at once).
FAKE_NODE_IP = LOOPBACK
NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
NODE_LABEL = ("type", "kwok")

# Environment knobs: name -> (default, meaning). Read once per `up`; the effective values are recorded
# in run/state.json so that `status` and `down` never depend on the caller's environment.
KNOBS: dict[str, tuple[str, str]] = {
    "RIG_ETCD_PORT": ("23790", "etcd client port"),
    "RIG_ETCD_PEER_PORT": ("23800", "etcd peer port"),
    "RIG_APISERVER_PORT": ("16443", "kube-apiserver secure port"),
    "RIG_KCM_PORT": ("16257", "kube-controller-manager secure (health) port"),
    "RIG_SCHEDULER_PORT": ("16259", "kube-scheduler secure (health) port"),
    "RIG_KWOK_PORT": (
        "16250",
        "kwok's kubelet API (pod logs) on 127.0.0.1, the fake Nodes' kubelet port; unset: RIG_APISERVER_PORT - 193",
    ),
    "RIG_APISERVER_MAX_INFLIGHT": ("200", "kube-apiserver --max-requests-inflight"),
    "RIG_APISERVER_MAX_MUTATING_INFLIGHT": ("100", "kube-apiserver --max-mutating-requests-inflight"),
    "RIG_APISERVER_PROFILING": ("0", "1: kube-apiserver --profiling=true (/debug/pprof, for the bench's CPU profiles)"),
    "RIG_KCM_QPS": ("100", "kube-controller-manager --kube-api-qps (per controller client)"),
    "RIG_KCM_BURST": ("200", "kube-controller-manager --kube-api-burst"),
    "RIG_SCHEDULER_QPS": ("100", "kube-scheduler --kube-api-qps"),
    "RIG_SCHEDULER_BURST": ("200", "kube-scheduler --kube-api-burst"),
    "RIG_NODES": ("2", "number of fake kwok Nodes"),
    "RIG_NODE_CPU": ("32", "allocatable CPU per fake Node"),
    "RIG_NODE_MEMORY": ("256Gi", "allocatable memory per fake Node"),
    "RIG_NODE_PODS": ("1000", "allocatable pods per fake Node"),
    "RIG_UP_TIMEOUT": ("180", "seconds `up` waits for the whole rig to become ready"),
    "RIG_SKIP_BUILD": ("0", "1: do not run build.sh, use whatever .rig/bin holds"),
}

KWOK_PORT_BELOW_APISERVER = 193  # kwok's port without its knob: 16443 - 193 = 16250

# The ports `up` binds, by the name state.json records them under -> the knob that sets each one.
PORT_KNOBS: dict[str, str] = {
    "etcd": "RIG_ETCD_PORT",
    "etcd-peer": "RIG_ETCD_PEER_PORT",
    "apiserver": "RIG_APISERVER_PORT",
    "kube-controller-manager": "RIG_KCM_PORT",
    "kube-scheduler": "RIG_SCHEDULER_PORT",
    "kwok": "RIG_KWOK_PORT",
}


class RigError(Exception):
    """A failure with one line that names its cause; `main` prints it and exits non-zero."""


def knob(name: str) -> str:
    """The value of an environment knob, or its default from KNOBS."""
    return os.environ.get(name, KNOBS[name][0])


def int_knob(name: str, minimum: int = 0) -> int:
    """An integer knob, validated so that a typo fails `up` with a clear line instead of a flag error."""
    raw = knob(name)
    try:
        value = int(raw)
    except ValueError:
        raise RigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise RigError(f"{name}={value} must be >= {minimum}")
    return value


def say(msg: str) -> None:
    """A progress line; flushed at once so that callers piping our output see it live."""
    print(f"rig: {msg}", flush=True)


def rel(path: Path) -> str:
    """A path as shown to humans: relative to the repo when inside it."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(ROOT))
    return str(path)
