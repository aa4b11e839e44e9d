"""Shared fixtures. ``TEST_DB`` (sqlite, postgres, mysql) picks the database."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from agents import set_tracing_disabled
from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections, connection, connections
from django.utils import timezone

from tests.settings import PREPARED_STATEMENTS, TEST_DB

# The tests run offline: nothing is exported to OpenAI's tracing service.
set_tracing_disabled(True)

T = TypeVar("T")


VENDOR = {"sqlite": "sqlite", "postgres": "postgresql", "mysql": "mysql"}[TEST_DB]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "server_db: needs a database server (PostgreSQL or MariaDB), not SQLite"
    )
    config.addinivalue_line(
        "markers", "vendor(name): runs only on that database (sqlite, postgresql or mysql)"
    )
    config.addinivalue_line(
        "markers",
        "prepared_statements(on): runs only when TEST_PREPARED_STATEMENTS is set (True) "
        "or only when it is not (False)",
    )


def _applies(item: pytest.Item) -> bool:
    if item.get_closest_marker("server_db") is not None and VENDOR == "sqlite":
        return False
    prepared = item.get_closest_marker("prepared_statements")
    if prepared is not None and prepared.args[0] != PREPARED_STATEMENTS:
        return False
    only = item.get_closest_marker("vendor")
    return only is None or VENDOR in only.args


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Behaviour that exists on one database only (a server dropping connections,
    # InnoDB's deadlock detector) is deselected elsewhere, not skipped: each
    # such test runs on the databases it is about, every time.
    deselected = [item for item in items if not _applies(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if _applies(item)]


@pytest.fixture(autouse=True)
def _close_worker_connections() -> Iterator[None]:
    """Close the connection that sync_to_async's shared worker thread opened.

    Otherwise it outlives the test database and PostgreSQL refuses to drop it.
    """
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


async def in_request(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` as Django's ASGI handler runs a request.

    Its own ``ThreadSensitiveContext`` (so its ORM calls get a thread and a
    connection of their own) and ``close_old_connections`` at the end, as the
    ``request_finished`` signal does.
    """
    async with ThreadSensitiveContext():
        try:
            return await work()
        finally:
            await sync_to_async(close_old_connections)()


async def in_requests(*works: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run each of ``works`` in its own concurrent request."""
    return await asyncio.gather(*(in_request(work) for work in works))


@pytest.fixture
def vendor() -> str:
    return connection.vendor


async def count_rows(model: Any, **filters: Any) -> int:
    return await model.objects.filter(**filters).acount()


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    """A user named alice (the owner in ownership tests)."""
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def bob(django_user_model: Any) -> Any:
    """A user named bob (someone else)."""
    return django_user_model.objects.create_user("bob")


class Clock:
    """The time ``timezone.now()`` returns while frozen, moved forward by hand."""

    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)

    def advance(self, delta: datetime.timedelta | float) -> None:
        """Move on by ``delta`` (a ``timedelta`` or seconds)."""
        if not isinstance(delta, datetime.timedelta):
            delta = datetime.timedelta(seconds=delta)
        self.now += delta


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A frozen clock: ``timezone.now()`` (every timestamp this app writes or compares)."""
    frozen = Clock()
    monkeypatch.setattr(timezone, "now", lambda: frozen.now)
    return frozen
