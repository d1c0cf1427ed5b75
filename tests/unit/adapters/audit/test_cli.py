"""The `db` and `history` arguments, and that they cost other `procjob` commands nothing."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from procjob.adapters import audit as adapter
from procjob.cli import audit as cli


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="procjob")
    cli.add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_the_cli_spells_the_environment_variables_like_the_adapter() -> None:
    assert (cli.ENV_DSN, cli.ENV_DSN_FILE) == (adapter.ENV_DSN, adapter.ENV_DSN_FILE)


def test_history_defaults_to_the_default_namespace_and_a_table() -> None:
    args = parse("history", "thumbs")
    assert (args.name, args.namespace, args.output, args.uid, args.database_url) == (
        "thumbs",
        "default",
        "table",
        None,
        None,
    )


def test_db_migrate_takes_a_database_url() -> None:
    args = parse("db", "migrate", "--database-url", "postgresql://h/db")
    assert args.database_url == "postgresql://h/db"


def test_an_unknown_output_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse("history", "thumbs", "-o", "yaml")
    assert caught.value.code == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err


def test_building_the_parser_does_not_import_the_database_driver() -> None:
    probe = (
        "import sys, argparse; from procjob.cli import audit;"
        "audit.add_parsers(argparse.ArgumentParser().add_subparsers());"
        "print(sorted(m for m in ('psycopg', 'psycopg_pool') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
