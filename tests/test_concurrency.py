"""Real concurrency: separate request contexts (threads, connections) on the real database."""

from __future__ import annotations

import asyncio
import threading
from contextlib import AbstractContextManager

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.utils import timezone

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage, AgentSession
from tests.conftest import in_request, in_requests
from tests.row_locks import held_elsewhere

pytestmark = pytest.mark.django_db(transaction=True)

WRITERS = 12
BATCHES = 4
BATCH_SIZE = 3


def item(writer: int, batch: int, n: int) -> dict:
    return {"role": "user", "content": f"w{writer} b{batch} n{n}"}


async def write_batches(session_id: str, writer: int) -> None:
    session = DjangoSession(session_id)  # one instance per request, as in a view
    for batch in range(BATCHES):
        await session.add_items([item(writer, batch, n) for n in range(BATCH_SIZE)])


@pytest.mark.parametrize("rounds", [3])
async def test_concurrent_writers_on_one_new_session_lose_nothing(rounds):
    # Each round starts from a session that does not exist yet, so every
    # writer races to create its row (InnoDB deadlocks, SQLite lock errors).
    for round_number in range(rounds):
        session_id = f"shared-{round_number}"
        writers = [lambda w=w, sid=session_id: write_batches(sid, w) for w in range(WRITERS)]
        await in_requests(*writers)
        stored = await DjangoSession(session_id).get_items()
        assert await AgentSession.objects.filter(session_id=session_id).acount() == 1
        assert len(stored) == WRITERS * BATCHES * BATCH_SIZE
        for writer in range(WRITERS):
            mine = [i for i in stored if i["content"].startswith(f"w{writer} ")]
            expected = [item(writer, b, n) for b in range(BATCHES) for n in range(BATCH_SIZE)]
            assert mine == expected  # kept, in order, each batch contiguous within itself
        for start, entry in enumerate(stored):
            if entry["content"].endswith(" n0"):  # each add_items call stays contiguous
                prefix = entry["content"][:-1]
                assert [e["content"] for e in stored[start : start + 3]] == [
                    f"{prefix}{n}" for n in range(3)
                ]


async def test_concurrent_pops_return_each_item_exactly_once():
    session_id = "popped"
    total = 60
    await DjangoSession(session_id).add_items([{"n": n} for n in range(total)])

    async def pop_until_empty() -> list[dict]:
        session = DjangoSession(session_id)
        popped = []
        while (got := await session.pop_item()) is not None:
            popped.append(got)
        return popped

    results = await in_requests(*(pop_until_empty for _ in range(10)))
    everything = [entry["n"] for popped in results for entry in popped]
    assert sorted(everything) == list(range(total))
    for popped in results:  # each caller saw the tail shrink: newest first
        numbers = [entry["n"] for entry in popped]
        assert numbers == sorted(numbers, reverse=True)
    assert await AgentMessage.objects.acount() == 0


async def test_concurrent_adds_pops_and_clears_never_raise():
    session_id = "mixed"

    async def adder(k: int) -> None:
        for b in range(5):
            await DjangoSession(session_id).add_items([{"k": k, "b": b}])

    async def popper() -> None:
        for _ in range(5):
            await DjangoSession(session_id).pop_item()

    async def clearer() -> None:
        for _ in range(3):
            await DjangoSession(session_id).clear_session()
            await asyncio.sleep(0)

    await in_requests(*(lambda k=k: adder(k) for k in range(4)), popper, popper, clearer)
    assert await AgentSession.objects.filter(session_id=session_id).acount() <= 1
    remaining = await DjangoSession(session_id).get_items()
    orphans = await AgentMessage.objects.exclude(session__session_id=session_id).acount()
    assert orphans == 0
    assert len(remaining) == await AgentMessage.objects.acount()


# -- cancellation -------------------------------------------------------------


def session_lock_held(session_id: str) -> AbstractContextManager[None]:
    """Hold the session row's lock (SQLite: the write lock) from another thread."""
    return held_elsewhere(
        lambda: AgentSession.objects.filter(session_id=session_id).update(updated_at=timezone.now())
    )


async def run_cancelled_while_locked(session_id: str, operation) -> None:
    lock = session_lock_held(session_id)
    await asyncio.to_thread(lock.__enter__)
    task = asyncio.create_task(operation())
    await asyncio.sleep(0.3)  # the operation now waits for the lock in its thread
    task.cancel()
    await asyncio.sleep(0.3)
    still_waiting = not task.done()
    await asyncio.to_thread(lock.__exit__, None, None, None)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert still_waiting, "a cancelled write must not be abandoned while it is in flight"


async def test_cancelled_add_items_completes_whole_and_session_stays_usable():
    session = DjangoSession("cancelled")
    await session.add_items([{"n": 0}])
    batch = [{"n": n} for n in range(1, 501)]
    await run_cancelled_while_locked("cancelled", lambda: session.add_items(batch))
    assert await AgentMessage.objects.acount() == 501
    await session.add_items([{"n": 501}])
    assert [i["n"] for i in await session.get_items()] == list(range(502))


async def test_add_items_cancelled_before_it_starts_writes_nothing():
    session = DjangoSession("never")
    task = asyncio.create_task(session.add_items([{"n": 1}]))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    assert await AgentMessage.objects.acount() == 0
    await session.add_items([{"n": 2}])
    assert await session.get_items() == [{"n": 2}]


async def test_cancelled_pop_item_removes_exactly_one_item():
    session = DjangoSession("cancelled")
    await session.add_items([{"n": n} for n in range(3)])
    await run_cancelled_while_locked("cancelled", session.pop_item)
    assert await session.get_items() == [{"n": 0}, {"n": 1}]
    assert await session.pop_item() == {"n": 1}


async def test_cancelled_clear_session_clears_everything():
    session = DjangoSession("cancelled")
    await session.add_items([{"n": n} for n in range(3)])
    await run_cancelled_while_locked("cancelled", session.clear_session)
    assert await AgentMessage.objects.acount() == 0
    assert await AgentSession.objects.acount() == 0
    await session.add_items([{"n": 9}])
    assert await session.get_items() == [{"n": 9}]


# -- connections the server drops -------------------------------------------------


def server_connection_id() -> int:
    query = (
        "SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT CONNECTION_ID()"
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        return int(cursor.fetchone()[0])


def kill_server_connection(connection_id: int) -> None:
    """Drop a connection from the server side, as a restart or idle timeout would."""
    try:
        _kill(connection_id)
    finally:
        connection.close()  # this helper thread's own connection


def _kill(connection_id: int) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(%s)", [connection_id])
            for _ in range(100):
                cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [connection_id])
                if cursor.fetchone() is None:
                    return
                threading.Event().wait(0.02)
            raise AssertionError("the backend did not exit")
        cursor.execute(f"KILL {int(connection_id)}")


@pytest.mark.server_db
async def test_each_operation_succeeds_right_after_the_server_dropped_the_connection():
    session = DjangoSession("dropped")
    await session.add_items([{"n": 1}])

    await drop_session_connection_safely()
    assert await session.get_items() == [{"n": 1}]
    await drop_session_connection_safely()
    await session.add_items([{"n": 2}])
    await drop_session_connection_safely()
    assert await session.pop_item() == {"n": 2}
    await drop_session_connection_safely()
    await session.clear_session()
    assert await session.get_items() == []


async def drop_session_connection_safely() -> None:
    # Read the id without touching the connection through DjangoSession's retry path.
    connection_id = await sync_to_async(server_connection_id)()
    await asyncio.to_thread(kill_server_connection, connection_id)
    await asyncio.sleep(0.05)


@pytest.mark.server_db
async def test_a_dropped_connection_is_left_usable_for_plain_orm_calls_too():
    session = DjangoSession("dropped-orm")
    await session.add_items([{"n": 1}])
    await drop_session_connection_safely()
    await session.get_items()
    # The worker thread's connection is healthy again for the project's own queries.
    assert await AgentSession.objects.filter(session_id="dropped-orm").aexists()


def test_separate_threads_use_separate_connections():
    # The premise of the tests above: a request context is a thread with its own connection.
    ids = []

    def record() -> None:
        ids.append(id(connections["default"]))
        connections["default"].close()

    threads = [threading.Thread(target=record) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 2


async def test_in_request_runs_each_request_in_its_own_thread():
    names = await in_requests(
        *(lambda: sync_to_async(lambda: threading.current_thread().name)() for _ in range(3))
    )
    assert len(set(names)) == 3
    assert (await in_request(lambda: sync_to_async(lambda: 1)())) == 1
