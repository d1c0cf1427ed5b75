"""Where the audit DSN comes from, and that its password never reaches a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from procjob.adapters.audit.dsn import ENV_DSN, ENV_DSN_FILE, check_dsn, redact_dsn, resolve_dsn, scrub
from procjob.adapters.audit.errors import AuditConfigError

PASSWORD = "s3cr3t-Pa55"
URL = f"postgresql://procjob:{PASSWORD}@db.example:5432/audit?sslmode=verify-full&sslrootcert=/ca.crt"


def test_the_url_comes_from_the_environment() -> None:
    assert resolve_dsn({ENV_DSN: f" {URL}\n"}) == URL


def test_the_url_comes_from_a_mounted_secret_file_without_its_newline(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text(f"{URL}\n")
    assert resolve_dsn({ENV_DSN_FILE: str(secret)}) == URL


def test_nothing_configured_is_none_and_empty_values_count_as_unset() -> None:
    assert resolve_dsn({}) is None
    assert resolve_dsn({ENV_DSN: "", ENV_DSN_FILE: " "}) is None


def test_both_variables_set_is_an_error_naming_both(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text(URL)
    with pytest.raises(AuditConfigError) as caught:
        resolve_dsn({ENV_DSN: URL, ENV_DSN_FILE: str(secret)})
    assert ENV_DSN in str(caught.value)
    assert ENV_DSN_FILE in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("make_path", "expected"),
    [
        pytest.param(lambda d: d / "missing", "No such file or directory", id="a missing file is named"),
        pytest.param(lambda d: d, "Is a directory", id="a directory is not a secret file"),
        pytest.param(lambda d: _write(d / "bin", b"\xff\xfe"), "UnicodeDecodeError", id="binary garbage"),
        pytest.param(lambda d: _write(d / "empty", b"\n"), "is empty", id="an empty file"),
    ],
)
def test_an_unusable_secret_file_is_a_clear_config_error(tmp_path: Path, make_path: object, expected: str) -> None:
    path = make_path(tmp_path)  # type: ignore[operator]
    with pytest.raises(AuditConfigError) as caught:
        resolve_dsn({ENV_DSN_FILE: str(path)})
    message = str(caught.value)
    assert expected in message
    assert ENV_DSN_FILE in message
    assert str(path) in message
    assert "\n" not in message


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("dsn", "redacted"),
    [
        pytest.param(
            URL,
            "postgresql://procjob:***@db.example:5432/audit?sslmode=verify-full&sslrootcert=/ca.crt",
            id="a URL keeps its shape and TLS options",
        ),
        pytest.param(
            "postgres://u:p%40ss@h/db?password=other&sslmode=require",
            "postgres://u:***@h/db?password=***&sslmode=require",
            id="an encoded password and a password parameter are both removed",
        ),
        pytest.param("postgresql://u@h/db", "postgresql://u@h/db", id="a URL without password is unchanged"),
        pytest.param("postgresql://h1:5432,h2:5433/db", "postgresql://h1:5432,h2:5433/db", id="several hosts are kept"),
        pytest.param(
            f"host=h user=u password={PASSWORD} sslmode=require",
            "user=u password=*** host=h sslmode=require",
            id="key=value pairs lose the password",
        ),
        pytest.param("host=h password='a b\\'c'", "password=*** host=h", id="a quoted password with spaces is removed"),
        pytest.param(f"u:{PASSWORD}@h", "<unparseable connection string>", id="garbage is not echoed"),
    ],
)
def test_redaction_removes_the_password_and_keeps_the_rest(dsn: str, redacted: str) -> None:
    assert redact_dsn(dsn) == redacted


def test_scrub_removes_every_spelling_of_the_password_and_joins_lines() -> None:
    dsn = "postgresql://u:p%40ss@h/db"
    text = f'failed for "{dsn}"\n\tpassword p@ss or p%40ss'
    assert scrub(text, dsn) == 'failed for "postgresql://u:***@h/db" password *** or ***'


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        pytest.param(f"procjob:{PASSWORD}@db:5432/audit", "expected postgresql://", id="no scheme"),
        pytest.param(f"host=db passwd={PASSWORD}", 'invalid connection option "passwd"', id="unknown option"),
        pytest.param("  ", "empty database URL", id="blank"),
    ],
)
def test_a_malformed_dsn_is_a_config_error_without_the_password(dsn: str, expected: str) -> None:
    with pytest.raises(AuditConfigError) as caught:
        check_dsn(dsn)
    assert expected in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None, "psycopg's message (which may quote the DSN) is not chained"
    assert caught.value.__context__ is None or caught.value.__suppress_context__
