"""One run at a time per conversation: ``DjangoSession.exclusive`` and its lease."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from functools import partial

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import openai_django_sessions
from openai_django_sessions import DjangoSession, SessionBusy
from openai_django_sessions.models import AgentSessionLease
from openai_django_sessions.routers import shard_for
from tests.row_locks import held_elsewhere
from tests.settings import SHARDS, with_driver_cursor

pytestmark = pytest.mark.django_db(transaction=True)


def test_session_busy_is_exported_from_the_package():
    assert "SessionBusy" in openai_django_sessions.__all__
    assert openai_django_sessions.SessionBusy is SessionBusy
    assert "another run holds this conversation" in str(SessionBusy("chat"))


async def test_a_held_conversation_is_refused_to_a_second_run_until_the_first_ends():
    first, second = DjangoSession("chat"), DjangoSession("chat")

    async with first.exclusive():
        with pytest.raises(SessionBusy, match="another run holds this conversation"):
            async with second.exclusive(timeout=0):
                pass
    async with second.exclusive(timeout=0):
        await second.add_items([{"role": "user", "content": "after"}])

    assert await AgentSessionLease.objects.acount() == 0
    assert await second.get_items() == [{"role": "user", "content": "after"}]


async def test_the_lease_is_given_back_when_the_block_raises():
    session = DjangoSession("chat")

    with pytest.raises(RuntimeError, match="boom"):
        async with session.exclusive():
            raise RuntimeError("boom")

    async with DjangoSession("chat").exclusive(timeout=0):
        pass


async def test_a_waiting_run_gets_the_conversation_once_the_holder_ends():
    events: list[str] = []
    held = asyncio.Event()

    async def holder() -> None:
        async with DjangoSession("chat").exclusive():
            held.set()
            events.append("first in")
            await asyncio.sleep(0.2)
            events.append("first out")

    async def waiter() -> None:
        await held.wait()
        async with DjangoSession("chat").exclusive(timeout=None):
            events.append("second in")

    await asyncio.gather(holder(), waiter())

    assert events == ["first in", "first out", "second in"]


async def test_other_conversations_and_other_tables_are_not_held():
    custom = DjangoSession(
        "chat", sessions_table="mine", messages_table="mine_items", create_tables=True
    )

    async with (
        DjangoSession("chat").exclusive(),
        DjangoSession("other").exclusive(timeout=0),
        custom.exclusive(timeout=0),
    ):
        rows = AgentSessionLease.objects.order_by("sessions_table", "session_id")
        keys = [(row.sessions_table, row.session_id) async for row in rows]

    assert keys == [("agent_sessions", "chat"), ("agent_sessions", "other"), ("mine", "chat")]


async def test_custom_tables_hold_their_conversations_one_run_at_a_time():
    one = DjangoSession("chat", sessions_table="mine", messages_table="mine_items")
    two = DjangoSession("chat", sessions_table="mine", messages_table="mine_items")

    async with one.exclusive():
        with pytest.raises(SessionBusy):
            async with two.exclusive(timeout=0):
                pass


async def test_a_lease_on_another_users_conversation_is_permission_denied(alice, bob):
    await DjangoSession("chat", owner=alice).add_items([{"role": "user", "content": "hi"}])

    with pytest.raises(PermissionDenied, match="belongs to another user"):
        async with DjangoSession("chat", owner=bob).exclusive(timeout=0):
            pass
    assert await AgentSessionLease.objects.acount() == 0

    async with (
        DjangoSession("chat", owner=alice).exclusive(timeout=0),
        DjangoSession("new", owner=bob).exclusive(timeout=0),
    ):
        assert await AgentSessionLease.objects.acount() == 2


async def test_a_held_lease_on_another_users_conversation_is_still_permission_denied(alice, bob):
    await DjangoSession("chat", owner=alice).add_items([{"role": "user", "content": "hi"}])

    async with DjangoSession("chat", owner=alice).exclusive():
        with pytest.raises(PermissionDenied):
            async with DjangoSession("chat", owner=bob).exclusive(timeout=0):
                pass


async def test_a_lease_that_was_not_renewed_expires(clock):
    holder = DjangoSession("chat").exclusive(lease=30)
    await holder.__aenter__()  # never exits: its process died

    clock.advance(29)
    with pytest.raises(SessionBusy):
        async with DjangoSession("chat").exclusive(timeout=0):
            pass
    clock.advance(2)
    async with DjangoSession("chat").exclusive(timeout=0):
        pass
    assert holder._renewing is not None
    holder._renewing.cancel()


async def test_renewing_keeps_the_lease_past_its_first_expiry(clock):
    async with DjangoSession("chat").exclusive(lease=30) as lease:
        clock.advance(25)
        assert await lease.renew() is True
        clock.advance(25)  # 50 s after it was taken, 25 s after the renewal
        with pytest.raises(SessionBusy):
            async with DjangoSession("chat").exclusive(timeout=0):
                pass


async def test_a_held_lease_is_renewed_in_the_background():
    async with DjangoSession("chat").exclusive(lease=0.3):
        taken = (await AgentSessionLease.objects.aget()).expires_at
        renewed = taken
        for _ in range(600):  # renewed every 0.1 s; up to 30 s on a loaded machine
            await asyncio.sleep(0.05)
            renewed = (await AgentSessionLease.objects.aget()).expires_at
            if renewed > taken:
                break

    assert renewed > taken


async def test_a_holder_whose_lease_was_taken_over_learns_it_on_renewal(clock):
    async with DjangoSession("chat").exclusive(lease=30) as lease:
        clock.advance(31)
        async with DjangoSession("chat").exclusive(timeout=0):
            assert await lease.renew() is False
            assert lease.lost is True
        # Giving back its lost lease leaves the new holder's alone.
    assert await AgentSessionLease.objects.acount() == 0


async def statements_of(step: Callable[[], Awaitable[object]]) -> int:
    """How many statements ``step`` runs on the thread the session's queries run in."""
    captured = await sync_to_async(CaptureQueriesContext)(connection)
    await sync_to_async(captured.__enter__)()
    try:
        await step()
    finally:
        await sync_to_async(captured.__exit__)(None, None, None)
    return captured.final_queries - captured.initial_queries


async def test_taking_and_giving_back_a_free_lease_cost_one_statement_each(alice):
    counts = []
    for session in (DjangoSession("chat", owner=alice), DjangoSession("plain")):
        lease = session.exclusive()
        taking = await statements_of(lease.__aenter__)
        giving_back = await statements_of(partial(lease.__aexit__, None, None, None))
        counts.append((taking, giving_back))

    assert counts == [(1, 1), (1, 1)]
    assert await AgentSessionLease.objects.acount() == 0


def lease_row_locked(session_id: str) -> AbstractContextManager[None]:
    """Hold the lease row's lock (SQLite: the write lock) from another thread."""
    return held_elsewhere(
        lambda: AgentSessionLease.objects.filter(session_id=session_id).update(token="locker")
    )


async def test_a_run_cancelled_while_taking_the_lease_leaves_no_lease_behind():
    await AgentSessionLease.objects.acreate(
        sessions_table="agent_sessions",
        session_id="chat",
        token="expired",
        expires_at=timezone.now() - datetime.timedelta(minutes=1),
    )
    lock = lease_row_locked("chat")
    await asyncio.to_thread(lock.__enter__)

    async def run() -> None:
        async with DjangoSession("chat").exclusive(timeout=None):
            raise AssertionError("never reached: cancelled first")

    task = asyncio.create_task(run())
    await asyncio.sleep(0.3)  # the upsert now waits for the row in its thread
    task.cancel()
    await asyncio.to_thread(lock.__exit__, None, None, None)
    with pytest.raises(asyncio.CancelledError):
        await task

    # Whether the upsert took the lease before it learned of the cancellation or
    # not, no one holds the conversation now.
    async with DjangoSession("chat").exclusive(timeout=0):
        pass


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"timeout": -1}, ValueError, "timeout must be zero or more"),
        ({"timeout": "1"}, TypeError, "timeout must be a number of seconds"),
        ({"timeout": True}, TypeError, "timeout must be"),
        ({"lease": 0}, ValueError, "lease must be positive"),
        ({"lease": None}, TypeError, "lease must be a number of seconds, a timedelta, not"),
        ({"lease": datetime.timedelta(seconds=-5)}, ValueError, "lease must be positive"),
    ],
)
def test_bad_timeouts_and_lease_durations_are_refused_before_anything_is_written(
    kwargs, error, message
):
    with pytest.raises(error, match=message):
        DjangoSession("chat").exclusive(**kwargs)
    assert AgentSessionLease.objects.count() == 0


@pytest.mark.vendor("postgresql", "sqlite")
@pytest.mark.django_db(transaction=True, databases=["default", *SHARDS])
async def test_the_lease_lives_on_the_conversations_shard():
    sharded = override_settings(
        DATABASE_ROUTERS=["openai_django_sessions.routers.ShardRouter"],
        OPENAI_DJANGO_SESSIONS=with_driver_cursor({"SHARDS": SHARDS}),
    )
    with sharded:
        ids = [f"user-{n}-chat" for n in range(6)]
        for session_id in ids:
            async with DjangoSession(session_id).exclusive(timeout=0):
                shard = shard_for(session_id, SHARDS)
                leases = AgentSessionLease.objects.using(shard).filter(session_id=session_id)
                elsewhere = [
                    await AgentSessionLease.objects.using(alias).acount()
                    for alias in SHARDS
                    if alias != shard
                ]
                assert (await leases.acount(), elsewhere) == (1, [0, 0])
