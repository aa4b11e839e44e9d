"""Fixtures for fault tests: a PostgreSQL server of the test's own, to restart at will."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class PrivatePostgres:
    """A PostgreSQL instance in a temporary directory, on a port of its own.

    Never the shared server: restarting it disturbs nobody. Run as the
    ``postgres`` system user when the tests run as root (``initdb`` refuses
    root), as CI does; as the current user otherwise.
    """

    bindir: Path
    datadir: Path
    port: int
    user: str | None

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-w", "-l", str(self.datadir / "server.log"),
            "-o", f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1"
            " -c max_connections=150 -c fsync=off",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "-m", "fast", "stop")

    def restart(self) -> None:
        """Stop the server (dropping every connection) and start it again."""
        self.stop()
        self.start()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL's server binaries are needed (apt-get install postgresql)")
    bindir = Path(found[-1]).parent
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="ods-private-pg-"))
    datadir = root / "data"
    datadir.mkdir()
    if user:
        shutil.chown(root, user)
        shutil.chown(datadir, user)
    server = PrivatePostgres(bindir=bindir, datadir=datadir, port=_free_port(), user=user)
    server._run("initdb", "-D", str(datadir), "-A", "trust", "-U", "postgres", "-E", "UTF8")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


_aliases = itertools.count()


@pytest.fixture
def private_alias(private_postgres, transactional_db) -> Iterator[Callable[..., str]]:
    """``private_alias(**options)``: a database alias on the private server, migrated.

    Added after the test database is set up, so that the test may use it.
    """
    import psycopg
    from django.core.management import call_command
    from django.db import connections

    made: list[str] = []

    def make(**options: object) -> str:
        # A name never used before in this process: worker threads keep the
        # connections of earlier tests under their aliases, with their settings.
        alias = f"private_{next(_aliases)}"
        with psycopg.connect(
            host="127.0.0.1", port=private_postgres.port, user="postgres", autocommit=True
        ) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {alias} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {alias}")
        connections.settings[alias] = {
            **connections["default"].settings_dict,
            "NAME": alias,
            "HOST": "127.0.0.1",
            "PORT": str(private_postgres.port),
            "OPTIONS": {},
        }
        made.append(alias)
        _allow_in_this_test(alias)
        # Migrated without the test's options: a short idle_session_timeout would
        # cut the migration off whenever a loaded machine pauses it.
        call_command("migrate", database=alias, verbosity=0)
        connections[alias].close()
        del connections[alias]
        connections.settings[alias]["OPTIONS"] = options
        return alias

    yield make
    for alias in made:
        connection = connections[alias]
        connection.close()
        if connection.pool:
            connection.close_pool()
        del connections[alias]
        del connections.settings[alias]


def _allow_in_this_test(alias: str) -> None:
    """Let the running test case use ``alias``, which did not exist when it was set up.

    Django's test case refuses connections to aliases outside its ``databases``
    through a patched ``ensure_connection`` that closes over the test case class.
    """
    from django.db.backends.base.base import BaseDatabaseWrapper

    for cell in getattr(BaseDatabaseWrapper.ensure_connection, "__closure__", None) or ():
        owner = cell.cell_contents
        if isinstance(owner, type) and hasattr(owner, "databases"):
            owner.databases = frozenset({*owner.databases, alias})
