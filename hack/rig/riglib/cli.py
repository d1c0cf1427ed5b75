"""The rig's commands: `up`, `down`, `status` and `env` (see rig.py for what each one does)."""

from __future__ import annotations

import argparse
import datetime
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .config import BIN, KNOBS, KUBECONFIG, LOOPBACK, RUN, RigError, int_knob, rel, say
from .probes import apiserver_ready
from .processes import State, locked, port_free, proc_rss_kib, remove_state, stop
from .startup import binaries, check_ports_free, is_up, read_ports, run_build, start_all, validate_knobs


def clear_stale() -> bool:
    """Stop and remove a half-up rig; False when the rig is already up (nothing to do)."""
    old = State.load()
    if old is not None and is_up(old):
        say(f"already up (apiserver https://{LOOPBACK}:{old.ports['apiserver']}, {rel(KUBECONFIG)})")
        return False
    if old is not None or RUN.exists():
        say("found a stale, half-up rig; stopping what is left of it")
        if old is not None:
            stop(old.procs)
        remove_state()
    return True


def start_or_clean_up(state: State, bins: dict[str, Path], node_count: int, deadline: float) -> None:
    """Start the rig; on any failure leave nothing half-up behind: stop what started, drop the state,
    keep the logs."""
    try:
        start_all(state, bins, node_count, deadline)
    except BaseException as err:
        stop(state.procs)
        remove_state()
        if isinstance(err, KeyboardInterrupt):
            raise RigError("interrupted; stopped what had started") from None
        raise


def up() -> int:
    t0 = time.monotonic()
    with locked():
        if not clear_stale():
            return 0
        # Validate every knob before anything is built or started.
        validate_knobs()
        node_count = int_knob("RIG_NODES", 1)
        timeout = int_knob("RIG_UP_TIMEOUT", 1)
        ports = read_ports()
        run_build()
        bins = binaries()
        check_ports_free(ports, port_free)
        state = State(ports=ports, started_at=datetime.datetime.now(datetime.UTC).isoformat())
        start_or_clean_up(state, bins, node_count, time.monotonic() + timeout)
    say(f"up in {time.monotonic() - t0:.1f}s; kubeconfig {rel(KUBECONFIG)}")
    say('shell setup: eval "$(.venv/bin/python hack/rig/rig.py env)"')
    return 0


def down() -> int:
    from .nodecli import node_down
    from .nodeconf import NodePaths

    if NodePaths().root.exists():  # the real node first: it needs the apiserver to remove its Node
        node_down()
    with locked():
        state = State.load()
        if state is None:
            if RUN.exists() or KUBECONFIG.exists():
                remove_state()
                say("not running; removed leftover state")
            else:
                say("not running")
            return 0
        live = [p for p in state.procs if p.alive()]
        stop(state.procs)
        remove_state()
        say(f"stopped {len(live)} process(es) ({', '.join(p.name for p in live) or 'none alive'}); state removed")
    return 0


def status() -> int:
    state = State.load()
    if state is None:
        say("not up (no state)")
        return 1
    print(f"{'component':<26}{'pid':>8}  {'alive':<6}{'listen':<22}{'rss':>10}")
    total = 0
    for p in state.procs:
        alive = p.alive()
        rss = proc_rss_kib(p.pid) if alive else 0
        total += rss
        listen = f"{LOOPBACK}:{p.port}" if p.port else "-"
        print(f"{p.name:<26}{p.pid:>8}  {'yes' if alive else 'NO':<6}{listen:<22}{rss / 1024:>8.0f}Mi")
    print(f"{'total':<58}{total / 1024:>8.0f}Mi")
    ready = apiserver_ready(state.ports)
    print(f"apiserver /readyz: {'ok' if ready else 'NOT ready'}; kubeconfig: {rel(KUBECONFIG)}")
    return 0 if is_up(state) else 1


def env() -> int:
    print(f'export KUBECONFIG={shlex.quote(str(KUBECONFIG))} PATH={shlex.quote(str(BIN))}:"$PATH"')
    return 0


def node_command(name: str) -> Callable[[], int]:
    def run() -> int:
        from . import nodecli

        command: Callable[[], int] = getattr(nodecli, name)
        return command()

    return run


COMMANDS: dict[str, Callable[[], int]] = {
    "up": up,
    "down": down,
    "status": status,
    "env": env,
    "node-up": node_command("node_up"),
    "node-down": node_command("node_down"),
    "node-status": node_command("node_status"),
    "image": node_command("image"),
}


def parser() -> argparse.ArgumentParser:
    knobs = "\n".join(f"  {k:<38}{v[1]} (default {v[0]})" for k, v in KNOBS.items())
    result = argparse.ArgumentParser(
        prog="rig.py",
        description="A local Kubernetes rig (etcd, apiserver, controller-manager, scheduler, kwok) on 127.0.0.1.",
        epilog=f"environment knobs:\n{knobs}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("command", choices=list(COMMANDS))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so that an `up` being killed still stops what it started

    signal.signal(signal.SIGTERM, terminate)
    try:
        return COMMANDS[args.command]()
    except RigError as err:
        print(f"rig: {args.command} failed: {err}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("rig: interrupted", file=sys.stderr)
        return 130
