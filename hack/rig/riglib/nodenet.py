"""What the real node changes on the host, each change journalled before it is made so node-down undoes
exactly that: the bridge, the rig's own iptables chains, and the sysctls the kubelet rewrites.

Why a journal (undo.json) rather than "remove whatever looks like ours": node-down must stop only what
node-up started and restore only what it changed, also after a node-up that failed half-way.

The network: pods sit on a bridge owned by the rig, with no default route (they reach only the
bridge's subnet and the `kubernetes` Service IP), no masquerade, and forwarding from or to the bridge
dropped in the rig's own chain, so pod traffic never leaves the machine. The `kubernetes` Service IP
(10.96.0.1:443) is DNATed to a forwarder on the gateway that relays to the API server's loopback port:
there is no kube-proxy.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

from .config import SERVICE_IP, RigError, say
from .nodeconf import NodeNet

# The sysctls the kubelet sets at start (pkg/kubelet/cm, setupKernelTunables), and ip_forward, which
# nothing here should turn on but which is restored too in case a CNI plugin did.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
)
NAT_CHAIN = "PROCJOB-RIG-NAT"
FWD_CHAIN = "PROCJOB-RIG-FWD"


class Journal:
    """undo.json: the host changes made so far, saved after each one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            self.data = json.loads(path.read_text())

    def record(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def run(argv: list[str], what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One host command; a failure is a RigError naming the step and the command's own message."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        msg = (done.stderr or done.stdout).strip().splitlines()
        raise RigError(f"{what} failed: {' '.join(argv)}: {msg[-1] if msg else f'exit {done.returncode}'}")
    return done


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def save_sysctls(journal: Journal) -> None:
    """Record the values the kubelet may change, once (a second node-up keeps the first originals)."""
    if journal.get("sysctls") is not None:
        return
    saved = {}
    for name in KUBELET_SYSCTLS:
        with contextlib.suppress(OSError):
            saved[name] = sysctl_path(name).read_text().strip()
    journal.record("sysctls", saved)


def restore_sysctls(journal: Journal) -> list[str]:
    """Write back the recorded values that differ now; the names restored."""
    restored = []
    for name, value in (journal.get("sysctls") or {}).items():
        path = sysctl_path(name)
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
                restored.append(name.replace("/", "."))
        except OSError as err:
            say(f"node-down: could not restore {name.replace('/', '.')}={value}: {err}")
    return restored


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], "ip link show", check=False).returncode == 0


def overlapping_route(net: NodeNet) -> str | None:
    """A route of the host that overlaps the node's subnet (not our own bridge's), or None."""
    import ipaddress

    ours = ipaddress.ip_network(net.subnet)
    for line in run(["ip", "-4", "route", "show"], "ip route").stdout.splitlines():
        fields = line.split()
        if not fields or fields[0] == "default" or f"dev {net.bridge}" in line:
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(fields[0], strict=False).overlaps(ours):
                return line
    return None


def create_bridge(net: NodeNet, journal: Journal) -> None:
    """The bridge with the gateway address; refused when the name is taken or the subnet routed."""
    if journal.get("bridge") == net.bridge and link_exists(net.bridge):
        return
    if link_exists(net.bridge):
        raise RigError(f"an interface {net.bridge} exists and is not the rig's; set RIG_NODE_BRIDGE")
    route = overlapping_route(net)
    if route is not None:
        raise RigError(f"RIG_NODE_SUBNET={net.subnet} overlaps a route of this host ({route}); choose another")
    journal.record("bridge", net.bridge)
    run(["ip", "link", "add", net.bridge, "type", "bridge"], "creating the bridge")
    run(["ip", "addr", "add", f"{net.gateway}/{net.prefix}", "dev", net.bridge], "addressing the bridge")
    run(["ip", "link", "set", net.bridge, "up"], "bringing the bridge up")


def delete_bridge(journal: Journal) -> bool:
    bridge = journal.get("bridge")
    if bridge and link_exists(bridge):
        run(["ip", "link", "delete", bridge], "deleting the bridge", check=False)
        return True
    return False


def iptables(*args: str, check: bool = True) -> bool:
    return run(["iptables", "-w", "5", *args], "iptables", check=check).returncode == 0


def add_chains(net: NodeNet, journal: Journal) -> None:
    """The rig's own chains: DNAT of the `kubernetes` Service to the forwarder; no forwarding of pods."""
    journal.record("chains", True)
    for table, chain, parent in (("nat", NAT_CHAIN, "PREROUTING"), ("filter", FWD_CHAIN, "FORWARD")):
        if not iptables("-t", table, "-N", chain, check=False):
            iptables("-t", table, "-F", chain)
        if not iptables("-t", table, "-C", parent, "-j", chain, check=False):
            iptables("-t", table, "-I", parent, "1", "-j", chain)
    iptables(
        "-t", "nat", "-A", NAT_CHAIN, "-i", net.bridge, "-d", f"{SERVICE_IP}/32", "-p", "tcp", "--dport", "443",
        "-j", "DNAT", "--to-destination", f"{net.gateway}:{net.api_port}",
    )  # fmt: skip
    iptables("-t", "filter", "-A", FWD_CHAIN, "-i", net.bridge, "-j", "DROP")
    iptables("-t", "filter", "-A", FWD_CHAIN, "-o", net.bridge, "-j", "DROP")


def remove_chains(journal: Journal) -> bool:
    if not journal.get("chains"):
        return False
    for table, chain, parent in (("nat", NAT_CHAIN, "PREROUTING"), ("filter", FWD_CHAIN, "FORWARD")):
        while iptables("-t", table, "-D", parent, "-j", chain, check=False):
            pass
        iptables("-t", table, "-F", chain, check=False)
        iptables("-t", table, "-X", chain, check=False)
    return True


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root.resolve())
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all(root: Path) -> int:
    """Unmount everything below `root` (pod volumes, overlay snapshots, sandbox shm, netns); the count."""
    count = 0
    for _ in range(3):  # a mount can be stacked; a lazy unmount frees busy ones
        points = mounts_under(root)
        if not points:
            break
        for point in points:
            if run(["umount", point], "umount", check=False).returncode != 0:
                run(["umount", "-l", point], "umount -l", check=False)
            count += 1
    return count
