"""The audit database's DSN: where it comes from, how it is checked, and how it is kept secret.

The DSN is the platform's secret (it carries the password), so everything that may put it in a
message goes through `redact_dsn` or `scrub` first.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from procjob.adapters.audit.errors import AuditConfigError

ENV_DSN = "PROCJOB_DATABASE_URL"
ENV_DSN_FILE = "PROCJOB_DATABASE_URL_FILE"


def resolve_dsn(environ: Mapping[str, str]) -> str | None:
    """The DSN from PROCJOB_DATABASE_URL or from the file PROCJOB_DATABASE_URL_FILE names.

    The file is how a Kubernetes Secret is mounted; surrounding whitespace (a trailing newline) is
    stripped. Both set is an error rather than a silent precedence rule. None when neither is set.
    """
    direct = environ.get(ENV_DSN, "").strip()
    path = environ.get(ENV_DSN_FILE, "").strip()
    if direct and path:
        raise AuditConfigError(f"set either {ENV_DSN} or {ENV_DSN_FILE}, not both")
    if direct:
        return direct
    if not path:
        return None
    try:
        content = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise AuditConfigError(f"cannot read {ENV_DSN_FILE}={path}: {reason}") from None
    if not content:
        raise AuditConfigError(f"{ENV_DSN_FILE}={path} is empty")
    return content


_URL_CREDENTIALS = re.compile(r"^(?P<head>postgres(?:ql)?://[^:@/?]*:)(?P<password>[^@/?]*)(?=@)", re.I)
_URL_PASSWORD_PARAM = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&#]*)", re.I)
_REDACTED = "***"


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by `***`, for messages; the shape is kept."""
    if re.match(r"^postgres(?:ql)?://", dsn, re.I):
        dsn = _URL_CREDENTIALS.sub(lambda m: m["head"] + _REDACTED, dsn)
        return _URL_PASSWORD_PARAM.sub(lambda m: m["head"] + _REDACTED, dsn)
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparseable connection string>"
    if "password" in params:
        params["password"] = _REDACTED
    return make_conninfo("", **params)


def _secrets_of(dsn: str) -> list[str]:
    """Every spelling of the password the DSN carries (decoded and as written), longest first."""
    found: set[str] = set()
    with contextlib.suppress(psycopg.Error):
        password = conninfo_to_dict(dsn).get("password")
        if password:
            found.add(str(password))
    for pattern in (_URL_CREDENTIALS, _URL_PASSWORD_PARAM):
        found.update(m["password"] for m in pattern.finditer(dsn) if m["password"])
    return sorted(found, key=len, reverse=True)


def scrub(text: str, dsn: str) -> str:
    """`text` on one line, with the DSN redacted and no trace of its password."""
    if dsn:
        text = text.replace(dsn, redact_dsn(dsn))
    for secret in _secrets_of(dsn):
        text = text.replace(secret, _REDACTED)
    return " ".join(text.split())


def check_dsn(dsn: str) -> None:
    """Parse the DSN locally (libpq's parser, no network) so that syntax errors are config errors.

    libpq's "missing =" message quotes the rest of the string, password included, so only messages
    that name an option are passed on.
    """
    if not dsn.strip():
        raise AuditConfigError(f"empty database URL: set {ENV_DSN}")
    try:
        conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        detail = scrub(str(exc), dsn)
        if not detail.startswith("invalid connection option"):
            detail = "expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME or key=value pairs"
        raise AuditConfigError(f"invalid database URL {redact_dsn(dsn)}: {detail}") from None
