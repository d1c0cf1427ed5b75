"""The `procjob` command: run, crd, db migrate, history, worker.

Each subcommand lives in its own module and is imported only when used, so that `procjob worker`
in a worker pod does not load kopf and `procjob crd` does not load psycopg.
Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration (one clear line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="procjob", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from procjob.cli.run import add_parser as add_run_parser

    add_run_parser(sub)

    crd = sub.add_parser("crd", help="print the ProcessingJob CustomResourceDefinition (YAML)")
    crd.set_defaults(func=_crd)

    from procjob.cli.audit import add_parsers as add_audit_parsers

    add_audit_parsers(sub)

    worker = sub.add_parser(
        "worker",
        help="run a built-in stage inside a worker pod (parameters in PROCJOB_STAGE_PARAMS)",
        add_help=False,
    )
    worker.add_argument("args", nargs=argparse.REMAINDER)
    worker.set_defaults(func=_worker)
    return parser


def _crd(_: argparse.Namespace) -> int:
    from procjob.models.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _worker(args: argparse.Namespace) -> int:
    from procjob.worker.main import main as worker_main

    return worker_main(list(args.args))


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["worker"]:
        # Hand everything after `worker` to the worker untouched (its own --help included), and
        # keep worker pods from importing the other commands' dependencies.
        from procjob.worker.main import main as worker_main

        return worker_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
