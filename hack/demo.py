"""`make demo`: the whole thing on this machine, from a fresh clone.

up:   the rig (a real API server with kwok nodes), a throw-away PostgreSQL (Debian's server
      binaries, initdb under .rig/demo/), the CRD, the audit schema, the operator (in the
      background, log in .rig/logs/operator.log), then the examples in namespace `demo`, and
      `kubectl get pj` as they progress, then one job's audit history from PostgreSQL.
down: stops the operator and PostgreSQL, then the rig (`make demo-down`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

from tests.support.postgres import PostgresCluster, _unprivileged_account, find_bindir  # noqa: E402

DEMO = ROOT / ".rig" / "demo"
STATE = DEMO / "state.json"
NAMESPACE = "demo"
PY = sys.executable


def env() -> dict[str, str]:
    return {
        **os.environ,
        "KUBECONFIG": str(ROOT / ".rig" / "kubeconfig"),
        "PATH": f"{ROOT / '.rig' / 'bin'}{os.pathsep}{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT / "operator"),
    }


def run(*argv: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, env=env(), cwd=ROOT, text=True, capture_output=True, check=False)
    if not quiet and proc.stdout.strip():
        print(proc.stdout.rstrip())
    if check and proc.returncode != 0:
        sys.exit(f"demo: {' '.join(argv[:3])} failed:\n{proc.stderr.strip()}")
    return proc


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def start_postgres() -> str:
    account = _unprivileged_account()
    shutil.rmtree(DEMO / "pg", ignore_errors=True)
    root = DEMO / "pg"
    root.mkdir(parents=True)
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
    cluster = PostgresCluster(find_bindir(), root, account)
    cluster.init()
    cluster.start()
    import psycopg

    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE procjob")
    STATE.write_text(json.dumps({"pg_root": str(root.relative_to(ROOT)), "pg_bindir": str(cluster.bindir)}))
    return cluster.dsn_for("procjob")


FINAL_PHASES = {"Succeeded", "BackoffLimitExceeded", "StageFailed", "Cancelled", "DeadlineExceeded", "InvalidSpec"}
WATCH_SECONDS = 120
APPLY_TRIES = 15  # kubectl apply retried (1 s apart) while its discovery does not know the new CRD yet
UNKNOWN_KIND = ("no matches for kind", "ensure CRDs are installed first")


def operator_env(dsn_file: Path) -> dict[str, str]:
    """The environment of every `procjob` command the demo runs: the rig's and the audit database's."""
    return {**env(), "PROCJOB_DATABASE_URL_FILE": str(dsn_file)}


def start_rig() -> None:
    say("the rig: etcd, kube-apiserver, controller-manager, scheduler, kwok (a cold build takes minutes)")
    subprocess.run([PY, str(ROOT / "hack" / "rig" / "rig.py"), "up"], check=True, cwd=ROOT)


def install_crd() -> None:
    say("the ProcessingJob CRD")
    run("kubectl", "apply", "--server-side", "--force-conflicts", "-f", "crds/processingjob.yaml")
    run("kubectl", "wait", "--for=condition=Established", "crd/processingjobs.procjob.dev", "--timeout=60s")


def prepare_audit_database() -> Path:
    """Start PostgreSQL, migrate the audit schema; returns the file holding the DSN (owner-only)."""
    say("a throw-away PostgreSQL for the audit, and its schema")
    dsn = start_postgres()
    dsn_file = DEMO / "database-url"
    dsn_file.write_text(dsn)
    dsn_file.chmod(0o600)
    subprocess.run([PY, "-m", "procjob.cli.main", "db", "migrate"], check=True, cwd=ROOT, env=operator_env(dsn_file))
    return dsn_file


def start_operator(dsn_file: Path) -> None:
    """Run the operator in the background, record its pid for `down`, and fail if it exits at once."""
    say("the operator (log: .rig/logs/operator.log; metrics: http://127.0.0.1:18080/metrics)")
    log = (ROOT / ".rig" / "logs" / "operator.log").open("ab")
    operator = subprocess.Popen(
        [
            PY,
            "-m",
            "procjob.cli.main",
            "run",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            "18080",
            "--worker-image",
            "ghcr.io/procjob/procjob:0.1.0",
        ],
        env=operator_env(dsn_file),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )
    state = json.loads(STATE.read_text())
    state["operator_pid"] = operator.pid
    STATE.write_text(json.dumps(state))
    time.sleep(2)
    if operator.poll() is not None:
        sys.exit("demo: the operator exited at once; see .rig/logs/operator.log")


def all_final(table: str) -> bool:
    """True when `kubectl get pj -o wide` lists jobs and each one's phase column is a final phase."""
    rows = table.splitlines()[1:]
    return bool(rows) and all(r.split()[1] in FINAL_PHASES for r in rows if len(r.split()) > 1)


def discovery_lag(proc: subprocess.CompletedProcess[str]) -> bool:
    """kubectl failed only because its discovery (cached, or the API server's aggregated one, a
    moment behind a CRD just Established) does not list the kind yet: worth another try."""
    return proc.returncode != 0 and any(text in proc.stderr for text in UNKNOWN_KIND)


def apply_examples(tries: int = APPLY_TRIES, pause: float = 1.0) -> None:
    for _ in range(tries - 1):
        proc = run("kubectl", "apply", "-n", NAMESPACE, "-f", "examples/", check=False)
        if not discovery_lag(proc):
            if proc.returncode != 0:
                sys.exit(f"demo: kubectl apply failed:\n{proc.stderr.strip()}")
            return
        time.sleep(pause)
    run("kubectl", "apply", "-n", NAMESPACE, "-f", "examples/")


def run_examples() -> None:
    """Apply examples/ and print the jobs table every 2 s until all are final (at most WATCH_SECONDS)."""
    say(f"the examples, in namespace {NAMESPACE}")
    run("kubectl", "create", "namespace", NAMESPACE, check=False, quiet=True)
    apply_examples()
    deadline = time.monotonic() + WATCH_SECONDS
    while time.monotonic() < deadline:
        table = run("kubectl", "get", "pj", "-n", NAMESPACE, "-o", "wide", quiet=True).stdout
        print(
            f"\n$ kubectl get pj -n {NAMESPACE} -o wide   ({time.strftime('%H:%M:%S')})\n{table.rstrip()}", flush=True
        )
        if all_final(table):
            break
        time.sleep(2)


def show_history(dsn_file: Path) -> None:
    time.sleep(3)  # let the audit relay catch up before reading PostgreSQL
    say("the audit of record: procjob history retry-backoff -n demo (from PostgreSQL)")
    subprocess.run(
        [PY, "-m", "procjob.cli.main", "history", "retry-backoff", "-n", NAMESPACE],
        cwd=ROOT,
        env=operator_env(dsn_file),
        check=False,
    )


def print_next_steps() -> None:
    print(
        "\nThe demo keeps running. Try:\n"
        f"  export KUBECONFIG=$PWD/.rig/kubeconfig PATH=$PWD/.rig/bin:$PWD/.venv/bin:$PATH\n"
        f"  kubectl get pj -n {NAMESPACE}; kubectl describe pj retry-backoff -n {NAMESPACE}\n"
        f"  PROCJOB_DATABASE_URL_FILE=.rig/demo/database-url procjob history hello -n {NAMESPACE} -o json\n"
        "  curl -s 127.0.0.1:18080/metrics | grep ^procjob_\n"
        "Stop it with: make demo-down"
    )


def up() -> int:
    """Each step in turn; a demo left from an earlier `up` is stopped first (but not its rig)."""
    DEMO.mkdir(parents=True, exist_ok=True)
    if STATE.exists():
        down(quiet=True)
        DEMO.mkdir(parents=True, exist_ok=True)
    start_rig()
    install_crd()
    dsn_file = prepare_audit_database()
    start_operator(dsn_file)
    run_examples()
    show_history(dsn_file)
    print_next_steps()
    return 0


def down(quiet: bool = False) -> int:
    if STATE.exists():
        state = json.loads(STATE.read_text())
        pid = state.get("operator_pid")
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        root = ROOT / state["pg_root"]
        if (root / "data" / "postmaster.pid").exists():
            account = _unprivileged_account()
            cluster = PostgresCluster(Path(state["pg_bindir"]), root, account)
            try:
                cluster.stop("fast")
            except RuntimeError as exc:
                print(f"demo: stopping PostgreSQL: {exc}", file=sys.stderr)
    shutil.rmtree(DEMO, ignore_errors=True)
    if not quiet:
        subprocess.run([PY, str(ROOT / "hack" / "rig" / "rig.py"), "down"], check=False, cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(down() if sys.argv[1:] == ["down"] else up())
