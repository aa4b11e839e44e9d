"""PostgreSQL with Django's pool: the next call succeeds after the server dropped every
pooled connection, whatever the pool size (issue 10, item 1).

The server is a private instance (see ``conftest.private_postgres``), restarted for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from openai_django_sessions import DjangoSession
from tests.conftest import in_request

pytestmark = [pytest.mark.vendor("postgresql"), pytest.mark.django_db(transaction=True)]


async def warm(alias: str) -> None:
    """Wait until the pool holds its ``min_size`` open connections."""
    await sync_to_async(lambda: (connections[alias].pool.open(), connections[alias].pool.wait()))()


async def each_call_in_its_own_request(session: DjangoSession, first: int, count: int) -> None:
    for n in range(first, first + count):
        await in_request(lambda n=n: session.add_items([{"n": n}]))
        assert len(await in_request(session.get_items)) == n + 1
        await in_request(session.pop_item)
        await in_request(lambda n=n: session.add_items([{"n": n}]))


@pytest.mark.parametrize("pool_size", [1, 6, 12])
async def test_every_call_succeeds_after_a_server_restart_whatever_the_pool_size(
    private_postgres, private_alias, pool_size
):
    alias = await asyncio.to_thread(
        private_alias, pool={"min_size": pool_size, "max_size": pool_size}
    )
    session = DjangoSession("restarted", using=alias)
    await in_request(lambda: session.add_items([{"n": 0}]))
    await warm(alias)
    await asyncio.to_thread(private_postgres.restart)
    await each_call_in_its_own_request(session, 1, 4)
    assert [i["n"] for i in await in_request(session.get_items)] == list(range(5))


async def test_every_call_succeeds_after_the_idle_timeout_closed_pooled_connections(
    private_alias,
):
    alias = await asyncio.to_thread(
        private_alias, pool={"min_size": 4, "max_size": 4}, options="-c idle_session_timeout=1000"
    )
    session = DjangoSession("idle", using=alias)
    await in_request(lambda: session.add_items([{"n": 0}]))
    await warm(alias)
    await asyncio.sleep(1.5)  # every pooled connection is now past the server's timeout
    await each_call_in_its_own_request(session, 1, 3)
    assert [i["n"] for i in await in_request(session.get_items)] == list(range(4))


async def test_every_call_succeeds_after_a_server_restart_without_a_pool(
    private_postgres, private_alias
):
    alias = await asyncio.to_thread(private_alias)
    session = DjangoSession("unpooled", using=alias)
    await session.add_items([{"n": 0}])
    await asyncio.to_thread(private_postgres.restart)
    await session.add_items([{"n": 1}])
    assert await session.get_items() == [{"n": 0}, {"n": 1}]


async def directly(work: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``work`` in this context: every call on the test's own connection."""
    return await work()


@pytest.mark.parametrize("pooled", [True, False])
async def test_usage_details_and_fork_calls_succeed_after_a_server_restart(
    private_postgres, private_alias, pooled
):
    # With the pool each call is a request of its own, handed a pooled connection;
    # without, every call reuses the one connection the restart dropped.
    options = {"pool": {"min_size": 4, "max_size": 4}} if pooled else {}
    alias = await asyncio.to_thread(private_alias, **options)
    session = DjangoSession("restarted", using=alias)
    run = in_request if pooled else directly
    await run(lambda: session.add_items([{"n": 0}]))
    if pooled:
        await warm(alias)
    calls = {
        "aget_usage": session.aget_usage,
        "aget_details": session.aget_details,
        "aupdate_details": lambda: session.aupdate_details(title="after"),
        "afork": lambda: session.afork("forked"),
    }
    for name, call in calls.items():
        await asyncio.to_thread(private_postgres.restart)
        assert await run(call) is not None, name
    assert (await session.aget_details()).title == "after"
    assert await DjangoSession("forked", using=alias).get_items() == [{"n": 0}]
