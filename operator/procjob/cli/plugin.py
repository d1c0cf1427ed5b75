"""`kubectl pj`: day-2 commands for ProcessingJobs (the `kubectl-pj` executable).

    kubectl pj cancel JOB              spec.cancel: true; the job ends Cancelled
    kubectl pj suspend JOB             spec.suspend: true; the running attempt is stopped, not charged
    kubectl pj resume JOB              spec.suspend: false
    kubectl pj retry JOB               re-run a Failed job from its failed stage
    kubectl pj retry --all-failed [-n NS | -A] [-l SELECTOR]
                                       retry every retryable failed job (they queue for a slot)
    kubectl pj list [--failed] [-n NS | -A] [-l SELECTOR] [-o json]
                                       jobs at a glance; --failed: what failed, why, when, attempts
    kubectl pj logs JOB [--stage S] [--item K] [--attempt N] [-c C] [-f]
                                       the attempt's pod log; once the pod is gone, the operator's
                                       archive of it (procjob.cli.pj_logs says how)
    kubectl pj describe JOB            stages, attempts, retry decisions, conditions, events
    kubectl pj history JOB [-o json]   the audit timeline (also for deleted jobs), read with your own
                                       token from the operator (procjob.cli.pj_history says how)

Everything here is also possible with plain kubectl (each command's --help prints the equivalent):
the plugin adds state checks, waits for the operator's acknowledgement and readable output. It
uses the current kubeconfig (--kubeconfig, else $KUBECONFIG, else ~/.kube/config; --context;
-n/--namespace, else the context's namespace) and makes only API calls that RBAC can grant:
get/list/patch processingjobs, get pods/log, list events, and for `history` without a URL
get services/proxy of the operator's Service.

Cancel, suspend and resume change the spec and then wait (up to --timeout, default 30 s; --no-wait
to skip) until the operator has observed the new generation. Retry sets the annotation
`procjob.dev/retry` to an RFC 3339 timestamp and waits until the operator copies it into
`status.lastRetryRequest`.

Exit codes: 0 done; 1 the job is unknown, in the wrong state, the API refused, or the operator did
not acknowledge in time (one line on stderr); 2 bad usage or configuration.

This module holds the parser and `main`; the rest is split by concern:
    pj_errors    the exception tree and exit codes
    pj_connect   kubeconfig / in-cluster credentials, read by the `kubernetes` package
    pj_api       the httpx client and the API names
    pj_state     what a job's JSON says (finished, retryable: procjob.models.lifecycle)
    pj_commands  the commands
    pj_describe  the `describe` text
    pj_list      the `list` rows and table (the dead-letter view)
    pj_history   `history` over HTTP
    pj_logs      `logs`: live, else from the operator's archive
Importing it loads no kopf, no pydantic and no psycopg: the job is read as plain JSON, so a
plugin older or newer than the operator still reads the fields it knows, and `--help` is quick.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from procjob.cli.pj_api import CONTAINER, GROUP, LABEL_JOB_UID, RETRY_ANNOTATION, Api
from procjob.cli.pj_commands import (
    Command,
    Context,
    cmd_cancel,
    cmd_describe,
    cmd_history,
    cmd_list,
    cmd_resume,
    cmd_retry,
    cmd_suspend,
)
from procjob.cli.pj_connect import load_access
from procjob.cli.pj_errors import EXIT_OK, PluginError
from procjob.cli.pj_logs import cmd_logs

DEFAULT_TIMEOUT = 30.0
EQUIVALENTS = {
    "cancel": 'kubectl patch pj JOB --type=merge -p \'{"spec":{"cancel":true}}\'',
    "suspend": 'kubectl patch pj JOB --type=merge -p \'{"spec":{"suspend":true}}\'',
    "resume": 'kubectl patch pj JOB --type=merge -p \'{"spec":{"suspend":false}}\'',
    "retry": f"kubectl annotate pj JOB --overwrite {RETRY_ANNOTATION}=$(date -u +%Y-%m-%dT%H:%M:%SZ)\n"
    "  --all-failed: kubectl annotate pj --field-selector status.phase=Failed [-l SELECTOR] --overwrite"
    f" {RETRY_ANNOTATION}=$(date -u +%Y-%m-%dT%H:%M:%SZ)\n"
    "  (that also marks InvalidSpec jobs, which the operator acknowledges and ignores)",
    "list": "kubectl get pj [--field-selector status.phase=Failed] -o custom-columns=NAME:.metadata.name,"
    'REASON:.status.conditions[?(@.type=="Succeeded")].reason,ATTEMPTS:.status.attempts,'
    "FAILED:.status.completionTime,MESSAGE:.status.message",
    "logs": f"kubectl logs -l {LABEL_JOB_UID}=UID,{GROUP}/stage=STAGE,{GROUP}/attempt=N -c {CONTAINER}"
    f" (an item: ,{GROUP}/item=K)\n"
    '  once the pod is gone: curl -H "Authorization: Bearer $TOKEN"'
    " URL/api/v1/namespaces/NS/processingjobs/JOB/logs/STAGE/N?container=main (an item: &item=K)",
    "describe": "kubectl describe pj JOB; kubectl get pj JOB -o yaml",
    "history": 'curl -H "Authorization: Bearer $TOKEN" URL/api/v1/namespaces/NS/processingjobs/JOB/history',
}


def build_parser() -> argparse.ArgumentParser:
    common = _connection_options()
    parser = argparse.ArgumentParser(
        prog="kubectl pj",
        description=__doc__.split("\n\n")[0],
        epilog="Each command's --help shows the plain kubectl equivalent.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, helptext: str, *, job: str = "ProcessingJob name") -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=helptext,
            description=f"{helptext}\n\nkubectl equivalent:\n  {EQUIVALENTS[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )
        if job:
            p.add_argument("job", metavar="JOB", nargs=None if name != "retry" else "?", help=job)
        p.set_defaults(func=func)
        return p

    _wait_options(add("cancel", cmd_cancel, "cancel a job: its pods are deleted and it ends Cancelled"), "cancel")
    _wait_options(add("suspend", cmd_suspend, "suspend a job: the running attempt is stopped, not charged"), "suspend")
    _wait_options(add("resume", cmd_resume, "resume a suspended job"), "resume")
    retry = add(
        "retry",
        cmd_retry,
        "re-run a Failed job from its failed stage",
        job="ProcessingJob name (or --all-failed)",
    )
    _wait_options(retry, "retry")
    _selection_options(retry)
    retry.add_argument(
        "--all-failed",
        action="store_true",
        help="retry every failed job in the namespace (-A: all namespaces; -l: those matching a label selector);"
        " jobs that cannot be retried (InvalidSpec, ReconcileError) are listed and skipped",
    )
    listing = add(
        "list", cmd_list, "list jobs; --failed: the dead-letter view (what failed, why, when, attempts)", job=""
    )
    _selection_options(listing)
    listing.add_argument("--failed", action="store_true", help="only the jobs that ended Failed")
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    logs = add(
        "logs", cmd_logs, "print the logs of a stage's attempt (default: the latest); archived once the pod is gone"
    )
    _logs_options(logs)
    _source_options(logs)
    add("describe", cmd_describe, "show stages, attempts, retry decisions, conditions and events")
    history = add("history", cmd_history, "attempt timeline from the audit (also after deletion)")
    history.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    _source_options(history)
    return parser


def _connection_options() -> argparse.ArgumentParser:
    """--kubeconfig, --context, -n: accepted before and after the command."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given after the subcommand does not reset one given before it.
    common.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="path to the kubeconfig file")
    common.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context to use")
    common.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace of the job")
    return common


def _wait_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the operator to acknowledge the {what} (default %(default)g)",
    )
    p.add_argument("--no-wait", action="store_true", help="return once the request is recorded")


def _selection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-A", "--all-namespaces", action="store_true", help="jobs in every namespace")
    p.add_argument("-l", "--selector", metavar="SELECTOR", help="label selector, e.g. team=media,tier!=batch")


def _logs_options(logs: argparse.ArgumentParser) -> None:
    logs.add_argument("--stage", help="stage name (default: the current stage, else the last one that ran)")
    logs.add_argument(
        "--item", type=int, help="the item of a fanned-out stage (forEach), from 0: required there; its own attempts"
    )
    logs.add_argument("--attempt", type=int, help="attempt number (default: the stage's latest, or the item's)")
    logs.add_argument("-c", "--container", help=f"container (default: {CONTAINER}, the stage's own)")
    logs.add_argument("-f", "--follow", action="store_true", help="stream the logs (while the pod runs)")
    logs.add_argument("--tail", type=int, help="only the last N lines")
    logs.add_argument(
        "--archived", action="store_true", help="read the operator's archive even while the pod still exists"
    )


def _source_options(history: argparse.ArgumentParser) -> None:
    """Where the operator's history (and log archive) is read: --history-url, the proxy, a DSN."""
    history.add_argument(
        "--history-url",
        metavar="URL",
        help="the operator's HTTP endpoint, e.g. https://procjob.example.com; default $PROCJOB_HISTORY_URL, else"
        " the API server's service proxy to --operator-service; your kubeconfig's bearer token is sent",
    )
    history.add_argument(
        "--operator-service",
        metavar="NAMESPACE/NAME",
        help="the operator's Service for the service proxy; default $PROCJOB_OPERATOR_SERVICE or"
        " procjob-system/procjob-metrics",
    )
    history.add_argument(
        "--allow-insecure-http", action="store_true", help="allow an http:// --history-url that is not the loopback"
    )
    history.add_argument(
        "--database-url",
        metavar="DSN",
        help="read PostgreSQL directly (platform admins); also $PROCJOB_DATABASE_URL or the file named by"
        " $PROCJOB_DATABASE_URL_FILE when no history URL is set",
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for option in ("kubeconfig", "context", "namespace"):
        if not hasattr(args, option):
            setattr(args, option, None)
    env = os.environ if environ is None else environ
    clients: list[Api] = []

    def connect() -> tuple[Api, str]:
        access = load_access(args.kubeconfig, args.context, args.namespace, env)
        api = Api(access)
        clients.append(api)
        return api, access.namespace

    try:
        code: int = args.func(Context(args=args, connect=connect, environ=env))
        return code
    except PluginError as exc:
        sys.stderr.write(f"kubectl-pj: error: {exc.message}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    finally:
        for api in clients:
            api.close()


if __name__ == "__main__":
    # `python -m procjob.cli.plugin`: PluginError lives in pj_errors, so the class main() catches
    # is the one every module raises, also when this file runs as __main__.
    sys.exit(main())
