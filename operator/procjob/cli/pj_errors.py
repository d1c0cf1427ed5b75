"""How `kubectl pj` fails: one exception tree and the exit codes it maps to.

    PluginError         one line on stderr, exit `code` (1 unless said otherwise)
    └── ApiError        the API server answered with an error status (exit 1)

Exit codes: 0 done; 1 the job is unknown, in the wrong state, the API refused, or the operator
did not acknowledge in time; 2 bad usage or configuration (EXIT_USAGE).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class PluginError(Exception):
    """A failure to report as one line on stderr with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ApiError(PluginError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message or reason or f"HTTP {status}")
        self.status = status
        self.reason = reason
