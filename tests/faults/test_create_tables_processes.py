"""create_tables=True with the default table names, processes starting at once on an
empty database: every one succeeds (issue 10, item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4

CHILD = """
import os, sys, time
from pathlib import Path
import django
django.setup()
from asgiref.sync import async_to_sync
from openai_django_sessions import DjangoSession
go = Path(sys.argv[1])
Path(f"{go}.{sys.argv[2]}").touch()  # ready: Django imported and set up
while not go.exists():
    time.sleep(0.01)
session = DjangoSession(sys.argv[2], create_tables=True)
async_to_sync(session.add_items)([{"from": sys.argv[2]}])
assert async_to_sync(session.get_items)() == [{"from": sys.argv[2]}]
print("ok")
"""


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """The name of a database with no tables at all, on the server the tests use."""
    name = f"ods_empty_{uuid.uuid4().hex[:8]}"
    if connection.vendor == "sqlite":
        yield str(tmp_path / name)
        return
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        connection.close()
        with connection.cursor() as cursor:
            force = " WITH (FORCE)" if connection.vendor == "postgresql" else ""
            cursor.execute(f"DROP DATABASE IF EXISTS {name}{force}")


@pytest.mark.django_db(transaction=True)
def test_processes_starting_at_once_on_an_empty_database_all_succeed(empty_database, tmp_path):
    go = tmp_path / "go"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DB_NAME": empty_database,
        "PYTHONPATH": str(ROOT),
    }
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(go), f"process-{n}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    ready = [Path(f"{go}.process-{n}") for n in range(PROCESSES)]
    for _ in range(12_000):  # every child at the start line, so that they start at once
        if all(path.exists() for path in ready) or any(c.poll() is not None for c in children):
            break
        time.sleep(0.01)
    go.touch()
    results = [child.communicate(timeout=300) for child in children]
    failures = [err for (out, err) in results if out.strip() != "ok"]
    assert failures == [], failures[0][-2000:]
