"""`node-up`, `node-down`, `node-status`, `image`: a real kubelet + containerd + runc node joined to the rig.

node-up starts the rig if needed, then (each step journalled so node-down undoes exactly it):
the bridge and the rig's iptables chains; the node's certificates (signed by the rig's CA);
containerd with its own socket and state; the images (pause, and procjob:dev when `make image` has
built it); a forwarder from the bridge gateway to the API server (the `kubernetes` Service's DNAT
target); CoreDNS on the gateway; the kubelet, waited for until its Node is Ready.

node-down stops only the processes node-up recorded (by pid and start time), kills the containers
its containerd still runs, unmounts everything below .rig/node, removes the bridge, the chains, the
Node object and .rig/node, and restores the sysctls the kubelet changed.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

from . import images, nodenet, noderuntime
from .config import BIN, LOOPBACK, RUN, RigError, rel, say
from .nodeconf import NODE_NAME, PAUSE_IMAGE, NodeNet, NodePaths, node_knob
from .pki import Pki
from .probes import admin_ssl, api_url, apiserver_ready, http
from .processes import State, locked, port_free, proc_starttime, spawn, stop, wait_for

HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip", "socat", "umount")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
COREDNS_READY = 18181
# Host paths the kubelet, containerd and the CNI library write whatever they are told (device plugins,
# the CNI result cache, shim sockets, legacy log links). node-down removes those node-up created.
HOST_DIRS = ("/var/lib/kubelet", "/var/lib/cni", "/run/containerd", "/var/log/containers")


def preflight() -> dict[str, Path]:
    """Root, the host's tools, cgroups, the kubelet: one line naming what is missing."""
    if os.geteuid() != 0:
        raise RigError("the real node needs root (containerd, the kubelet, a bridge, iptables)")
    missing = [t for t in HOST_TOOLS if shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]
    missing += [f"{noderuntime.CNI_BIN}/{p}" for p in CNI_PLUGINS if not (noderuntime.CNI_BIN / p).exists()]
    if missing:
        raise RigError(f"missing {', '.join(missing)}: run `make setup` (Debian's containerd, runc, "
                       "containernetworking-plugins, iptables, socat)")  # fmt: skip
    if not Path("/sys/fs/cgroup/memory").is_dir() and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        raise RigError("no memory cgroup controller under /sys/fs/cgroup")
    bins = {"kubelet": BIN / "kubelet", "coredns": BIN / "coredns"}
    for path in bins.values():
        if not os.access(path, os.X_OK):
            raise RigError(f"missing {rel(path)}: run `make setup` (builds it from the Go module proxy)")
    return bins


def check_ports(net: NodeNet) -> None:
    wanted = [(LOOPBACK, net.healthz_port, "RIG_KUBELET_HEALTHZ_PORT"), (LOOPBACK, COREDNS_READY, "CoreDNS ready")]
    wanted += [(net.gateway, p, k) for p, k in ((net.kubelet_port, "RIG_KUBELET_PORT"),
               (net.api_port, "RIG_NODE_API_PORT"), (net.dns_port, "RIG_NODE_DNS_PORT"))]  # fmt: skip
    for addr, port, knob in wanted:
        if not port_free(port, addr):
            raise RigError(f"port {addr}:{port} is already in use; free it or set {knob}")


def node_ready(ports: dict[str, int]) -> bool:
    status, body = http(api_url(ports, f"/api/v1/nodes/{NODE_NAME}"), admin_ssl())
    if status != 200:
        return False
    conds = {c["type"]: c["status"] for c in json.loads(body).get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True"


def ctr(paths: NodePaths, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["ctr", f"--address={paths.socket}", "--namespace=k8s.io", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def host_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{BIN}"}


def start_containerd(state: State, paths: NodePaths, deadline: float) -> None:
    argv = ["containerd", f"--config={paths.containerd / 'config.toml'}"]
    spawn(state, "containerd", argv, None, env=host_env(), cwd=paths.root)
    wait_for("containerd's socket", lambda: paths.socket.exists() and ctr(paths, "version").returncode == 0,
             deadline, state.procs)  # fmt: skip


def import_images(paths: NodePaths) -> list[str]:
    """pause always; procjob:dev when `make image` built it (else node-up says how to get it)."""
    done = [PAUSE_IMAGE]
    images.import_archive(paths.socket, images.build_pause())
    latest = images.latest_procjob_archive()
    if latest is not None:
        images.import_archive(paths.socket, latest)
        done.append(images.PROCJOB_IMAGE)
    return done


def start_forwarder(state: State, net: NodeNet, apiserver_port: int) -> None:
    """Pods reach the API server at the `kubernetes` Service IP, DNATed to this relay on the gateway."""
    argv = ["socat", f"TCP-LISTEN:{net.api_port},bind={net.gateway},fork,reuseaddr",
            f"TCP:{LOOPBACK}:{apiserver_port}"]  # fmt: skip
    spawn(state, "node-api-forwarder", argv, net.api_port, env=host_env())


def start_coredns(state: State, paths: NodePaths, net: NodeNet, bins: dict[str, Path], deadline: float) -> None:
    from .nodeauth import coredns_kubeconfig

    kubeconfig = coredns_kubeconfig(paths, state_ports(state))
    paths.corefile.write_text(noderuntime.corefile(net, kubeconfig))
    spawn(state, "coredns", [str(bins["coredns"]), "-conf", str(paths.corefile)], net.dns_port, cwd=paths.root)
    url = f"http://{LOOPBACK}:{COREDNS_READY}/ready"
    wait_for("CoreDNS /ready", lambda: http(url)[0] == 200, deadline, state.procs)


def state_ports(state: State) -> dict[str, int]:
    rig = State.load()
    if rig is None:
        raise RigError("the rig is not up")
    return rig.ports


def start_kubelet(state: State, paths: NodePaths, net: NodeNet, bins: dict[str, Path], deadline: float) -> None:
    spawn(state, "kubelet", noderuntime.kubelet_args(paths, net, bins["kubelet"]), net.kubelet_port,
          env=host_env(), cwd=paths.root)  # fmt: skip
    url = f"http://{LOOPBACK}:{net.healthz_port}/healthz"
    wait_for("the kubelet's /healthz", lambda: http(url)[0] == 200, deadline, state.procs)
    ports = state_ports(state)
    wait_for(f"Node {NODE_NAME} Ready", lambda: node_ready(ports), deadline, state.procs, interval=0.5)


def bring_up(state: State, paths: NodePaths, net: NodeNet, journal: nodenet.Journal, bins: dict[str, Path]) -> None:
    deadline = time.monotonic() + int(node_knob("RIG_NODE_UP_TIMEOUT"))
    rig_ports = state_ports(state)
    nodenet.save_sysctls(journal)
    nodenet.create_bridge(net, journal)
    check_ports(net)
    nodenet.add_chains(net, journal)
    node_pki = noderuntime.write_credentials(
        Pki(RUN / "pki"), paths, net, f"https://{LOOPBACK}:{rig_ports['apiserver']}"
    )
    noderuntime.write_files(paths, net, node_pki)
    journal.record("host_dirs_created", [d for d in HOST_DIRS if not Path(d).exists()])
    t = time.monotonic()
    start_containerd(state, paths, deadline)
    imported = import_images(paths)
    say(f"containerd up, images imported: {', '.join(imported)} ({time.monotonic() - t:.1f}s)")
    start_forwarder(state, net, rig_ports["apiserver"])
    start_coredns(state, paths, net, bins, deadline)
    journal.record("kubelet", True)
    t = time.monotonic()
    start_kubelet(state, paths, net, bins, deadline)
    say(f"kubelet up; Node {NODE_NAME} Ready ({time.monotonic() - t:.1f}s)")
    if images.PROCJOB_IMAGE not in imported:
        say(f"no {images.PROCJOB_IMAGE} yet: `make image` builds and imports it")


def node_is_up(paths: NodePaths) -> bool:
    state = State.load(paths.state)
    rig = State.load()
    if state is None or rig is None or not state.procs or not apiserver_ready(rig.ports):
        return False
    return all(p.alive() for p in state.procs) and node_ready(rig.ports)


def node_up() -> int:
    from .cli import up as rig_up

    t0 = time.monotonic()
    bins = preflight()
    net = NodeNet.from_knobs()
    if rig_up() != 0:
        return 1
    paths = NodePaths()
    with locked():
        if node_is_up(paths):
            say(f"node {NODE_NAME} already up")
            return 0
        if paths.root.exists():
            say("found a stale node; taking it down first")
            take_down(paths)
        paths.root.mkdir(parents=True, exist_ok=True)
        journal = nodenet.Journal(paths.undo)
        journal.record("net", asdict(net))
        now = datetime.datetime.now(datetime.UTC).isoformat()
        state = State(ports={"kubelet": net.kubelet_port}, started_at=now, path=paths.state)
        state.save()
        try:
            bring_up(state, paths, net, journal, bins)
        except BaseException:
            say("node-up failed; undoing what it did (logs kept in .rig/logs/)")
            take_down(paths)
            raise
    say(
        f"node {NODE_NAME} up in {time.monotonic() - t0:.1f}s (pods select rig.procjob.dev/node=real and tolerate "
        "its taint; their servers: the bridge gateway {net.gateway})".replace("{net.gateway}", net.gateway)
    )
    return 0


def kill_containers(paths: NodePaths) -> int:
    """SIGKILL and remove every task the node's containerd runs; the count."""
    if not paths.socket.exists() or ctr(paths, "version").returncode != 0:
        return 0
    tasks = [ln.split()[0] for ln in ctr(paths, "tasks", "ls").stdout.splitlines()[1:] if ln.strip()]
    for task in tasks:
        ctr(paths, "tasks", "kill", "--signal=SIGKILL", task)
    for task in tasks:
        for _ in range(50):
            if ctr(paths, "tasks", "rm", "--force", task).returncode == 0:
                break
            time.sleep(0.1)
    return len(tasks)


def kill_shims(paths: NodePaths) -> int:
    """Shims of this node's containerd outlive it by design: those naming its socket are ours."""
    mine = str(paths.socket)
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and b"containerd-shim" in argv[0] and mine.encode() in argv:
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
    return killed


def remove_log_links(paths: NodePaths) -> None:
    """The kubelet's legacy /var/log/containers links to this node's pod logs."""
    root = str(paths.pod_logs.resolve())
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(root):
                    link.unlink()


def remove_cgroups() -> None:
    """The kubelet's kubepods hierarchy (empty once its containers are gone), deepest first."""
    for top in Path("/sys/fs/cgroup").glob("*/kubepods"):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def delete_node_object() -> None:
    rig = State.load()
    if rig is not None and apiserver_ready(rig.ports):
        http(api_url(rig.ports, f"/api/v1/nodes/{NODE_NAME}"), admin_ssl(), "DELETE")


def take_down(paths: NodePaths) -> str:
    """Undo node-up (lock held): processes, containers, mounts, host changes, the Node, the files."""
    journal = nodenet.Journal(paths.undo)
    state = State.load(paths.state)
    procs = state.procs if state is not None else []
    stop([p for p in procs if p.name == "kubelet"])
    containers = kill_containers(paths)
    stop([p for p in procs if p.name != "kubelet"])
    shims = kill_shims(paths)
    mounts = nodenet.unmount_all(paths.root)
    remove_log_links(paths)
    for created in journal.get("host_dirs_created") or ():
        shutil.rmtree(created, ignore_errors=True)
    if journal.get("kubelet"):
        remove_cgroups()
    chains = nodenet.remove_chains(journal)
    bridge = nodenet.delete_bridge(journal)
    restored = nodenet.restore_sysctls(journal)
    delete_node_object()
    shutil.rmtree(paths.root, ignore_errors=True)
    live = [p.name for p in procs if proc_starttime(p.pid) == p.starttime]
    return (f"stopped {len(procs)} process(es){' (STILL ALIVE: ' + ', '.join(live) + ')' if live else ''}, "
            f"{containers} container(s), {shims} shim(s); {mounts} unmount(s); "
            f"{'bridge removed; ' if bridge else ''}{'chains removed; ' if chains else ''}"
            f"sysctls restored: {', '.join(restored) or 'none changed'}")  # fmt: skip


def node_down() -> int:
    paths = NodePaths()
    with locked():
        if not paths.root.exists():
            say("node: not running")
            return 0
        say(f"node down: {take_down(paths)}")
    return 0


def node_status() -> int:
    paths = NodePaths()
    state = State.load(paths.state)
    if state is None:
        say("node: not up")
        return 1
    for p in state.procs:
        print(f"{p.name:<22}{p.pid:>8}  {'yes' if p.alive() else 'NO'}")
    up = node_is_up(paths)
    print(f"Node {NODE_NAME}: {'Ready' if up else 'NOT ready'}")
    return 0 if up else 1


def image() -> int:
    """Build (or find cached) the images; import them when the node is up. RIG_IMAGE_TAG and
    RIG_IMAGE_TARGET build another tag or Dockerfile stage (the Tiltfile's `dev` image)."""
    t0 = time.monotonic()
    tag = os.environ.get("RIG_IMAGE_TAG") or images.PROCJOB_IMAGE
    images.build_pause()
    built = images.build_procjob(tag, os.environ.get("RIG_IMAGE_TARGET") or None)
    paths = NodePaths()
    if node_is_up(paths):
        images.import_archive(paths.socket, built)
        say(f"imported {tag} into node {NODE_NAME}")
    say(f"image done in {time.monotonic() - t0:.1f}s")
    return 0
