"""A throw-away PostgreSQL cluster for the `postgres`-marked tests.

The cluster is built with the server binaries that Debian's postgresql package installs (found
through `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`), in a temp dir, on
127.0.0.1 and a free port, with fsync off. It is session-scoped because initdb costs about a
second; each test gets its own database from the function-scoped `database` fixture instead.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as an unprivileged
account (`postgres` if the server package created it, else `nobody`) that owns the temp dir;
Python's `subprocess` switches user, so no runuser/sudo is needed. As a normal user everything
runs as that user.

Password authentication is on (scram over TCP) so that tests of DSN redaction see a real
password in real error messages.

Fixture API:
- `postgres` -> `PostgresCluster`: `.dsn` (superuser, database `postgres`), `.host`, `.port`,
  `.password`, `.dsn_for(dbname)`, `.create_database()`, `.drop_database(name)`, `.stop()`,
  `.start()`, `.running`. Outage tests stop and start the same cluster on the same port.
- `database` -> `str`: the DSN of a fresh, empty database, dropped after the test.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

_SUPERUSER = "postgres"
_UNPRIVILEGED_ACCOUNTS = ("postgres", "nobody")


def find_bindir() -> Path:
    """Where initdb, pg_ctl and postgres live, or a failure that says how to install them."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    # Debian's client-only pg_config may point at /usr/bin, where the server binaries are absent.
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _major(p.parent.name))
    candidates.extend(reversed(debian))
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    pytest.fail("PostgreSQL server binaries not found (initdb, pg_ctl): run `make setup`", pytrace=False)


def _major(version: str) -> int:
    return int(version) if version.isdigit() else -1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """One initdb'ed data directory and the server running on it."""

    def __init__(self, bindir: Path, root: Path, account: pwd.struct_passwd | None) -> None:
        self.bindir = bindir
        self.root = root
        self.datadir = root / "data"
        self.logfile = root / "postgres.log"
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.password = secrets.token_urlsafe(18)
        self._account = account
        self.running = False

    @property
    def dsn(self) -> str:
        """The superuser's DSN for the `postgres` maintenance database."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{_SUPERUSER}:{self.password}@{self.host}:{self.port}/{dbname}"

    def _run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """Run a server tool as the account that owns the data directory."""
        kwargs: dict[str, Any] = {}
        if self._account is not None:
            kwargs = {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "HOME": str(self.root)}
        out = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
            env=env,
            **kwargs,
        )
        if out.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed ({out.returncode}): {out.stderr.strip()}\n{log}")
        return out

    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        self._run(
            self.bindir / "initdb",
            "-D",
            self.datadir,
            "-U",
            _SUPERUSER,
            "--pwfile",
            pwfile,
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "timezone": "'UTC'",
        }
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _chown(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def start(self) -> None:
        """Start the server on the cluster's port and wait until it accepts connections."""
        self._run(
            self.bindir / "pg_ctl",
            "start",
            "-D",
            self.datadir,
            "-l",
            self.logfile,
            "-w",
            "-t",
            "60",
            "-o",
            f"-c port={self.port}",
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: disconnect clients; `immediate`: like a crash)."""
        self._run(self.bindir / "pg_ctl", "stop", "-D", self.datadir, "-m", mode, "-w", "-t", "60")
        self.running = False

    def create_database(self) -> str:
        name = f"test_{secrets.token_hex(6)}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _unprivileged_account() -> pwd.struct_passwd | None:
    """None when we are not root; else the account the server will run as."""
    if os.geteuid() != 0:
        return None
    for name in _UNPRIVILEGED_ACCOUNTS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    pytest.fail("running as root and no unprivileged account to run PostgreSQL as", pytrace=False)


def start_cluster(configure: Callable[[PostgresCluster], None] | None = None) -> PostgresCluster:
    """initdb and start a throw-away cluster; `configure` may edit its files between the two (the real
    node's tests add a listen address and a pg_hba line for the pods' subnet)."""
    account = _unprivileged_account()
    root = Path(tempfile.mkdtemp(prefix="procjob-pg-"))
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
    cluster = PostgresCluster(find_bindir(), root, account)
    try:
        cluster.init()
        if configure is not None:
            configure(cluster)
        for attempt in range(3):
            try:
                cluster.start()
                break
            except RuntimeError:
                # The free port may have been taken between probing and binding: pick another.
                if attempt == 2:
                    raise
                cluster.port = _free_port()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):
            cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def database(postgres: PostgresCluster) -> Iterator[str]:
    """The DSN of a fresh, empty database; the cluster is running again when the test ends."""
    name = postgres.create_database()
    try:
        yield postgres.dsn_for(name)
    finally:
        if not postgres.running:
            postgres.start()
        postgres.drop_database(name)
