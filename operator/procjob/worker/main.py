"""`procjob worker STAGE`: run one built-in stage inside a worker pod, under the worker contract.

The contract (`procjob.models.contract`; README.md beside this file): parameters arrive as a JSON
object in ``PROCJOB_STAGE_PARAMS``; outputs leave as one JSON object (at most 4 KiB) in the
termination message file (``PROCJOB_TERMINATION_MESSAGE_PATH``, default ``/dev/termination-log``);
the exit code says how it went: 0 success, 2 permanent failure, 75 transient failure, 1 a worker
bug. A failure also leaves ``{"error": ..., "kind": ...}`` in the termination message.

Stages are found through the registry of built-in stages (`procjob.models.builtin.registry`):
each descriptor names its run function, whose module is imported only when that stage runs.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from types import FrameType

from procjob.models.builtin.registry import BUILTIN_STAGES
from procjob.models.contract import (
    ENV_STAGE_PARAMS,
    ENV_TERMINATION_MESSAGE_PATH,
    EXIT_FAILED,
    EXIT_OK,
    MAX_OUTPUT_BYTES,
    TERMINATION_MESSAGE_PATH,
)
from procjob.worker.errors import Terminated, UsageError, WorkerError
from procjob.worker.log import event

Stage = Callable[[Mapping[str, object], Mapping[str, str]], dict[str, object]]

# Stage name -> "module:function" of its run function, as the descriptors say.
STAGES: dict[str, str] = {name: stage.runner for name, stage in BUILTIN_STAGES.items()}

USAGE = f"usage: procjob worker STAGE   (stages: {', '.join(STAGES)}; parameters in ${ENV_STAGE_PARAMS})"


def unknown_stage(name: str) -> str:
    return f"unknown stage {name!r}; known stages: {', '.join(STAGES)}"


def load_stage(name: str) -> Stage:
    if name not in STAGES:
        raise UsageError(unknown_stage(name))
    module_name, function = STAGES[name].split(":")
    stage: Stage = getattr(importlib.import_module(module_name), function)
    return stage


def read_params(env: Mapping[str, str]) -> dict[str, object]:
    raw = env.get(ENV_STAGE_PARAMS, "").strip() or "{}"
    try:
        params = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{ENV_STAGE_PARAMS} is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(params, dict):
        raise UsageError(f"{ENV_STAGE_PARAMS} must be a JSON object, not {type(params).__name__}")
    return params


def error_message(error: str, kind: str) -> str:
    """``{"error", "kind"}`` as JSON, the error shortened so the whole fits in 4 KiB."""
    message = json.dumps({"error": error, "kind": kind}, separators=(",", ":"))
    while len(message.encode()) > MAX_OUTPUT_BYTES:
        error = error[: max(0, len(error) - (len(message.encode()) - MAX_OUTPUT_BYTES) - 4)] + "..."
        message = json.dumps({"error": error, "kind": kind}, separators=(",", ":"))
    return message


def write_termination_message(env: Mapping[str, str], message: str) -> None:
    path = env.get(ENV_TERMINATION_MESSAGE_PATH) or TERMINATION_MESSAGE_PATH
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(message)
    except OSError as exc:
        event("worker.termination_message_failed", path=path, error=exc.strerror)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into Terminated, so that cleanup (aborting an upload) runs before exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated("terminated by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_stage(name: str, env: Mapping[str, str]) -> tuple[int, str]:
    """Run stage `name`; the exit code and the termination message to leave behind."""
    try:
        stage = load_stage(name)
        params = read_params(env)
        with sigterm_raises():
            outputs = stage(params, env)
        message = json.dumps(outputs, separators=(",", ":"))
        if len(message.encode()) > MAX_OUTPUT_BYTES:
            raise RuntimeError(f"stage {name!r} produced {len(message.encode())} bytes of outputs")
    except WorkerError as exc:
        event("worker.failed", stage=name, kind=exc.kind, exitCode=exc.exit_code, error=str(exc))
        return exc.exit_code, error_message(str(exc), exc.kind)
    except Exception as exc:
        # A bug, not a classified failure: exit 1 and let the job's rules decide. The message is
        # not logged (it might quote a URL or a header); the type and the failing line are.
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
        event("worker.crashed", stage=name, error=type(exc).__name__, at=where)
        return EXIT_FAILED, error_message(f"internal error: {type(exc).__name__}", "unknown")
    event("worker.succeeded", stage=name)
    return EXIT_OK, message


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE + "\n")
        return EXIT_OK
    problem = None
    if len(argv) != 1:
        problem = "no stage given" if not argv else f"expected one stage, got {len(argv)} arguments"
    elif argv[0] not in STAGES:
        problem = unknown_stage(argv[0])
    if problem is not None:
        error = UsageError(f"procjob worker: {problem}; {USAGE}")
        sys.stderr.write(f"{error}\n")
        write_termination_message(env, error_message(str(error), error.kind))
        return error.exit_code
    code, message = run_stage(argv[0], env)
    write_termination_message(env, message)
    return code
