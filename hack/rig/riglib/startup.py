"""What `up` does once it holds the lock: preflight checks, the build, certificates, the components.

Why in this order: every knob and port is checked, and the binaries are found, before anything is
started, so that a misconfiguration fails in one line without leaving processes behind.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .components import COMPONENT_NAMES, COMPONENTS, Component, Context, start_waves
from .config import (
    BIN,
    BUILD,
    KNOBS,
    KWOK_PORT_BELOW_APISERVER,
    LOOPBACK,
    PORT_KNOBS,
    ROOT,
    RUN,
    RigError,
    int_knob,
    knob,
    rel,
    say,
)
from .pki import Pki, kubeconfig_text, make_pki, write_private
from .probes import apiserver_ready
from .processes import State, spawn, wait_for

TOOLS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"]
CLIENT_KUBECONFIGS = ("admin", "kube-controller-manager", "kube-scheduler", "kwok")


def validate_knobs() -> None:
    """Fail on a non-integer integer knob before anything is built or started."""
    for name in KNOBS:
        if name not in ("RIG_NODE_CPU", "RIG_NODE_MEMORY"):
            int_knob(name)


def read_ports() -> dict[str, int]:
    """The ports the rig binds, from their knobs; they must all differ. kwok's, when its knob is not
    set, follows the apiserver's (KWOK_PORT_BELOW_APISERVER below it: 16250 by default), so that a
    second rig moved to other ports by their knobs does not collide on it."""
    ports = {name: int_knob(env_name, 1) for name, env_name in PORT_KNOBS.items()}
    if not os.environ.get(PORT_KNOBS["kwok"]):
        ports["kwok"] = ports["apiserver"] - KWOK_PORT_BELOW_APISERVER
    if len(set(ports.values())) != len(ports):
        raise RigError(f"the rig's ports must differ: {ports}")
    return ports


def check_ports_free(ports: dict[str, int], is_free: Callable[[int], bool]) -> None:
    """Fail with the knob to change when something already listens on one of the rig's ports."""
    for comp, port in ports.items():
        if not is_free(port):
            raise RigError(f"port {LOOPBACK}:{port} ({comp}) is already in use; free it or set {PORT_KNOBS[comp]}")


def binaries() -> dict[str, Path]:
    """The rig's executables in .rig/bin; a missing one is a clear error naming it."""
    found: dict[str, Path] = {}
    for n in TOOLS:
        path = BIN / n
        if not (path.exists() and os.access(path, os.X_OK)):
            raise RigError(f"missing tool {rel(path)}; run hack/rig/build.sh (needs Go >= 1.26)")
        found[n] = path
    return found


def run_build() -> None:
    """Run build.sh for the modules the rig needs; a no-op (instant) when its cache is warm."""
    if knob("RIG_SKIP_BUILD") == "1":
        return
    if shutil.which("bash") is None:
        raise RigError("missing tool 'bash' (needed by hack/rig/build.sh)")
    if shutil.which("go") is None:
        try:
            binaries()
        except RigError:
            raise RigError("missing tool 'go' (Go >= 1.26 builds the rig's binaries: make setup)") from None
        say("'go' is not on PATH; using the binaries already linked in .rig/bin without a build check")
        return
    code = subprocess.call(["bash", str(BUILD), "etcd", "k8s", "kwok"], cwd=ROOT)
    if code != 0:
        raise RigError(f"hack/rig/build.sh failed with exit code {code} (its message is above)")


def is_up(state: State | None) -> bool:
    """Every recorded process alive and the apiserver ready."""
    if state is None or not state.procs:
        return False
    names = {p.name for p in state.procs}
    if names != set(COMPONENT_NAMES):
        return False
    return all(p.alive() for p in state.procs) and apiserver_ready(state.ports)


def write_credentials(ctx: Context) -> None:
    """The PKI and one kubeconfig per client identity under run/."""
    t = time.monotonic()
    make_pki(ctx.pki)
    for stem in CLIENT_KUBECONFIGS:
        write_private(ctx.kubeconfig(stem), kubeconfig_text(ctx.pki, stem, ctx.server))
    say(f"certificates and kubeconfigs generated ({time.monotonic() - t:.2f}s)")


def start_component(ctx: Context, state: State, comp: Component) -> None:
    """Prepare, spawn and record one component, then run its `started` step."""
    if comp.prepare is not None:
        comp.prepare(ctx)
    env = comp.env(ctx) if comp.env is not None else None
    port = ctx.ports[comp.port] if comp.port is not None else None
    spawn(state, comp.name, comp.argv(ctx), port, env=env)
    if comp.started is not None:
        comp.started(ctx)


def await_ready(ctx: Context, state: State, comp: Component, deadline: float, since: float) -> None:
    """Wait for each of a component's checks (watching every process started), then announce it."""
    for check in comp.checks:
        wait_for(check.what(ctx), functools.partial(check.ok, ctx), deadline, list(state.procs))
    if comp.ready_line is not None:
        say(f"{comp.ready_line(ctx)} ({time.monotonic() - since:.1f}s)")
    if comp.on_ready is not None:
        comp.on_ready(ctx)


def start_wave(ctx: Context, state: State, wave: list[Component], deadline: float) -> None:
    """Start every component of one wave, then wait until each of them is ready, in listed order."""
    since = time.monotonic()
    for comp in wave:
        start_component(ctx, state, comp)
    for comp in wave:
        await_ready(ctx, state, comp, deadline, since)


def start_all(state: State, bins: dict[str, Path], node_count: int, deadline: float) -> None:
    """Start the components in dependency order, waiting for each one's readiness signal."""
    RUN.mkdir(parents=True, exist_ok=True)
    state.save()  # an interrupted `up` is then recognised as stale
    ctx = Context(ports=state.ports, bins=bins, run=RUN, pki=Pki(RUN / "pki"), node_count=node_count)
    write_credentials(ctx)
    for wave in start_waves(COMPONENTS):
        start_wave(ctx, state, wave, deadline)
