#!/usr/bin/env python3
"""The rig: a real, throw-away Kubernetes control plane on 127.0.0.1, without Docker.

Why this exists: procjob's integration tests, demo and benchmarks need a genuine apiserver, scheduler,
garbage collector and Job controller, but no container runtime. kwok plays the kubelet: it makes fake
Nodes Ready and drives pods through their phases following the Stages in hack/rig/stages/, which read
per-pod annotations (exit code, run time, failures per attempt, ...; see hack/rig/README.md).

Subcommands:
  up      build (no-op when cached), generate certificates, start etcd, kube-apiserver,
          kube-controller-manager, kube-scheduler and kwok, create the fake Nodes, wait until ready.
          A no-op when the rig is already up; a stale, half-up rig is stopped and started afresh.
  down    stop the processes `up` recorded (SIGTERM, then SIGKILL after a grace) and remove the state.
  status  what runs (component, pid, alive, port, RSS); exit status 1 when the rig is not up.
  env     print `export KUBECONFIG=... PATH=.../.rig/bin:$PATH` for eval in a shell.

Everything lives under .rig/ in the repository: bin/ (links made by build.sh), logs/<component>.log,
run/ (certificates, kubeconfigs, etcd data, state.json with pids) and kubeconfig (admin). Every
listener binds 127.0.0.1. Knobs (environment): see KNOBS in riglib/config.py and the README.

Only the standard library, `cryptography` and `pyyaml` are used, so it runs from the repo's .venv.
This file is the entry point only; the parts live in riglib/ (one module per concern, see its
__init__): certificates, processes, probes, the fake Nodes, the components table, start-up, commands.
"""

from __future__ import annotations

import sys

from riglib.cli import main  # hack/rig is on sys.path as this script's directory

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
