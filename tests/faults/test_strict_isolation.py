"""Many writers on one session under REPEATABLE READ and SERIALIZABLE: none fails
(issue 10, item 6)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, connections

from openai_django_sessions import DjangoSession
from tests.conftest import in_requests

pytestmark = [pytest.mark.server_db, pytest.mark.django_db(transaction=True)]

WRITERS = 40


@contextmanager
def isolation(level: str) -> Iterator[None]:
    """New connections of the default alias use ``level``."""
    options = connections["default"].settings_dict["OPTIONS"]
    saved = dict(options)
    if connection.vendor == "postgresql":
        from psycopg import IsolationLevel

        options["isolation_level"] = IsolationLevel[level.upper().replace(" ", "_")]
    else:
        options["isolation_level"] = level
    try:
        yield
    finally:
        options.clear()
        options.update(saved)


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
async def test_concurrent_writers_and_poppers_on_one_session_all_succeed(level):
    await DjangoSession("strict").add_items([{"seed": n} for n in range(WRITERS)])

    async def write(writer: int) -> object:
        session = DjangoSession("strict")
        await session.add_items([{"w": writer, "n": 0}, {"w": writer, "n": 1}])
        await session.add_items([{"w": writer, "n": 2}])
        return await session.pop_item()

    with isolation(level):
        popped = await in_requests(*(lambda w=w: write(w) for w in range(WRITERS)))
    remaining = await DjangoSession("strict").get_items()
    assert all(item is not None for item in popped)
    assert len(remaining) + len(popped) == WRITERS * 4
    keys = [repr(sorted(item.items())) for item in [*remaining, *popped]]
    assert len(set(keys)) == len(keys)  # each item once: kept or popped, never both
