"""How a worker stage fails, and what the operator should do about it.

A stage reports failure by raising one of these; `procjob.worker.main` turns the exception into
an exit code and a small termination message ``{"error": str(exc), "kind": exc.kind}``::

    WorkerError                    (never raised itself)
    ├── PermanentError             exit 2, kind "permanent": retrying cannot help
    │   ├── UsageError             no stage, an unknown stage, a malformed PROCJOB_STAGE_PARAMS
    │   ├── InvalidParams          a `with:` parameter fails validation (the message names the field)
    │   ├── AddressRefused         the SSRF guard refused a host or one of its addresses
    │   ├── SourceRejected         the source answered 4xx, a non-200, too many redirects, or
    │   │                          spoke broken HTTP
    │   ├── WrongContentType       the Content-Type matches none of `contentTypes`
    │   ├── TooLarge               declared or streamed size over `maxBytes`
    │   ├── ChecksumMismatch       the object's sha256 is not `expectSha256`
    │   └── StorageRejected        S3 refused the request (4xx: no bucket, access denied, ...)
    └── TransientError             exit 75, kind "transient": the same attempt may work later
        ├── SourceUnavailable      5xx, 429, timeouts, refused or reset connections, DNS hiccups
        ├── StorageUnavailable     S3 5xx, throttling, connection errors
        └── Terminated             SIGTERM arrived (pod deleted or evicted)

Any other exception is a bug in the worker: exit 1, kind "unknown", handled by the job's rules.
The exit codes are the worker contract's (`procjob.models.contract`).
Messages must be safe to show and log: never a credential, a header value or a URL's query string.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from procjob.models.contract import EXIT_PERMANENT, EXIT_TRANSIENT

Kind = Literal["permanent", "transient"]


class WorkerError(Exception):
    """A classified stage failure; `kind` and `exit_code` are fixed by the subclass."""

    kind: ClassVar[Kind]
    exit_code: ClassVar[int]


class PermanentError(WorkerError):
    kind = "permanent"
    exit_code = EXIT_PERMANENT


class TransientError(WorkerError):
    kind = "transient"
    exit_code = EXIT_TRANSIENT


class UsageError(PermanentError):
    pass


class InvalidParams(PermanentError):
    pass


class AddressRefused(PermanentError):
    pass


class SourceRejected(PermanentError):
    pass


class WrongContentType(PermanentError):
    pass


class TooLarge(PermanentError):
    pass


class ChecksumMismatch(PermanentError):
    pass


class StorageRejected(PermanentError):
    pass


class SourceUnavailable(TransientError):
    pass


class StorageUnavailable(TransientError):
    pass


class Terminated(TransientError):
    pass
