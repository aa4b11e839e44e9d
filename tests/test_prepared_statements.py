"""PostgreSQL prepares the hot statements when the alias allows it, and only then.

psycopg prepares a statement once it has run ``prepare_threshold`` times on a
connection, if the alias sets ``server_side_binding`` and a threshold; Django's
default (no threshold) never prepares, which connection poolers in transaction
mode (PgBouncer) need. The ``TEST_PREPARED_STATEMENTS=1`` leg of ``scripts/test``
runs the suite with those OPTIONS; the plain PostgreSQL leg without them.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage, AgentSession
from tests.settings import PREPARE_THRESHOLD

pytestmark = [pytest.mark.vendor("postgresql"), pytest.mark.django_db(transaction=True)]


async def _turns_and_pops() -> None:
    """More runs of each operation than the threshold, on the worker thread's connection."""
    session = DjangoSession("prepared")
    for n in range(PREPARE_THRESHOLD + 2):
        await session.add_items([{"role": "user", "content": f"question {n}"}] * 3)
        await session.get_items(limit=20)
        await session.get_items()
        await session.pop_item()


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def _hot(statements: list[str]) -> dict[str, bool]:
    sessions, messages = AgentSession._meta.db_table, AgentMessage._meta.db_table
    found = {
        "history read": f'SELECT "{messages}"."data"',
        "session upsert": f'INSERT INTO "{sessions}"',
        "message insert": f'INSERT INTO "{messages}"',
        "pop's lock": f'UPDATE "{sessions}"',
        "pop": f'DELETE FROM "{messages}"',
    }
    return {name: any(text in s for s in statements) for name, text in found.items()}


@pytest.mark.prepared_statements(True)
async def test_the_hot_statements_are_prepared_when_the_alias_sets_a_threshold() -> None:
    await _turns_and_pops()

    # The same thread as the session's calls, so the same connection.
    statements = await sync_to_async(_prepared_statements)()

    assert _hot(statements) == dict.fromkeys(_hot([]), True), statements


@pytest.mark.prepared_statements(False)
async def test_nothing_is_prepared_when_the_alias_leaves_djangos_default() -> None:
    await _turns_and_pops()

    statements = await sync_to_async(_prepared_statements)()

    assert statements == []
