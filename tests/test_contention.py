"""Lock contention the databases really produce is waited out, not raised."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, connections, transaction

from openai_django_sessions import DjangoSession
from openai_django_sessions import _transactions as transactions
from openai_django_sessions.models import AgentMessage, AgentSession
from tests.conftest import in_request, in_requests

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def retries(monkeypatch) -> list[int]:
    """Records each retry (the backoff before it) while keeping its real sleep."""
    seen: list[int] = []
    real = transactions.backoff

    def recording(attempt: int) -> None:
        seen.append(attempt)
        real(attempt)

    monkeypatch.setattr(transactions, "backoff", recording)
    return seen


@contextmanager
def sqlite_write_lock_held_elsewhere(seconds: float) -> Iterator[None]:
    """Another process's writer: a plain sqlite3 connection holding the write lock."""
    other = sqlite3.connect(
        connection.settings_dict["NAME"], isolation_level=None, check_same_thread=False
    )
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(seconds, other.rollback)
    timer.start()
    try:
        yield
    finally:
        timer.join()
        other.close()


@pytest.mark.vendor("sqlite")
async def test_sqlite_database_is_locked_by_another_process_is_retried(retries):
    options = connections["default"].settings_dict["OPTIONS"]
    saved = dict(options)
    options.update(timeout=0.1)  # new connections give up on the lock after 0.1 s
    try:
        session = DjangoSession("locked")
        started = time.monotonic()
        with sqlite_write_lock_held_elsewhere(0.8):
            await in_request(lambda: session.add_items([{"n": 1}]))
        waited = time.monotonic() - started
    finally:
        options.clear()
        options.update(saved)
    assert waited >= 0.7
    assert retries, "the 'database is locked' errors were retried"
    assert await session.get_items() == [{"n": 1}]


@pytest.mark.vendor("mysql")
async def test_innodb_deadlock_is_retried(retries):
    """A heavier transaction that holds a shared lock on the session row and
    then updates it, while add_items waits for that row, makes InnoDB roll
    add_items back as the deadlock victim; it must be run again, not raised."""
    await DjangoSession("contended").add_items([{"n": 0}])
    holding, go_on = threading.Event(), threading.Event()

    def heavy_transaction() -> None:
        try:
            with transaction.atomic():
                other = AgentSession.objects.create(session_id="heavy")
                AgentMessage.objects.bulk_create(
                    [AgentMessage(session=other, data={"k": k}) for k in range(200)]
                )
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT id FROM agent_sessions WHERE session_id = %s LOCK IN SHARE MODE",
                        ["contended"],
                    )
                holding.set()
                go_on.wait(10)
                AgentSession.objects.filter(session_id="contended").update(session_id="contended")
        finally:
            connection.close()

    blocker = threading.Thread(target=heavy_transaction)
    blocker.start()
    assert holding.wait(10)
    threading.Timer(0.3, go_on.set).start()  # once add_items waits for the row
    await in_request(lambda: DjangoSession("contended").add_items([{"n": 1}]))
    blocker.join(10)

    assert retries, "the deadlock was retried"
    assert await DjangoSession("contended").get_items() == [{"n": 0}, {"n": 1}]
    assert await AgentMessage.objects.filter(session__session_id="heavy").acount() == 200


@contextmanager
def strict_isolation() -> Iterator[None]:
    """New connections use the strictest isolation a project may configure."""
    options = connections["default"].settings_dict["OPTIONS"]
    saved = dict(options)
    if connection.vendor == "postgresql":
        from psycopg import IsolationLevel

        options["isolation_level"] = IsolationLevel.SERIALIZABLE
    else:
        options["isolation_level"] = "repeatable read"
    try:
        yield
    finally:
        options.clear()
        options.update(saved)


@pytest.mark.server_db
async def test_concurrent_pops_stay_exact_under_strict_isolation(retries):
    # DjangoSession's own transactions run at READ COMMITTED on PostgreSQL
    # (tests/faults/test_strict_isolation.py). MariaDB's REPEATABLE READ must
    # not let a pop read a snapshot older than the lock it waited for.
    total = 24
    await DjangoSession("strict").add_items([{"n": n} for n in range(total)])

    async def pop_until_empty() -> list[int]:
        session, popped = DjangoSession("strict"), []
        while (got := await session.pop_item()) is not None:
            popped.append(got["n"])
        return popped

    with strict_isolation():
        results = await in_requests(*(pop_until_empty for _ in range(4)))
    assert sorted(n for popped in results for n in popped) == list(range(total))
    assert await AgentMessage.objects.acount() == 0
