"""Cancelling every task, as shutdown code does, never returns before the write ends
(issue 10, item 7)."""

from __future__ import annotations

import asyncio

import pytest

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage
from tests.test_concurrency import session_lock_held

pytestmark = pytest.mark.django_db(transaction=True)


def cancel_every_other_task() -> None:
    """The shutdown idiom: cancel all tasks (the helpers a write waits on too)."""
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()


async def cancel_all_while_locked(session_id: str, operation) -> bool:
    """Start ``operation``, cancel every task while it waits for the session's lock,
    release the lock; whether the operation was still in flight after the cancel."""
    lock = session_lock_held(session_id)
    await asyncio.to_thread(lock.__enter__)
    task = asyncio.create_task(operation())
    await asyncio.sleep(0.3)  # the write now waits for the lock in its thread
    cancel_every_other_task()
    await asyncio.sleep(0.3)
    still_in_flight = not task.done()
    await asyncio.to_thread(lock.__exit__, None, None, None)
    with pytest.raises(asyncio.CancelledError):
        await task
    return still_in_flight


async def test_add_items_under_a_cancel_all_storm_has_committed_when_cancelled_error_arrives():
    session = DjangoSession("storm")
    await session.add_items([{"n": 0}])
    batch = [{"n": n} for n in range(1, 2001)]
    assert await cancel_all_while_locked("storm", lambda: session.add_items(batch))
    # Counted right when CancelledError arrived: nothing lands afterwards.
    assert await AgentMessage.objects.acount() == 2001
    await asyncio.sleep(0.2)
    assert await AgentMessage.objects.acount() == 2001


async def test_pop_item_under_a_cancel_all_storm_has_finished_when_cancelled_error_arrives():
    session = DjangoSession("storm")
    await session.add_items([{"n": n} for n in range(3)])
    assert await cancel_all_while_locked("storm", session.pop_item)
    # Committed: the item is gone though no caller received it (docs/explanation/concurrency.md).
    assert await session.get_items() == [{"n": 0}, {"n": 1}]


async def test_clear_session_under_a_cancel_all_storm_has_finished_when_cancelled_error_arrives():
    session = DjangoSession("storm")
    await session.add_items([{"n": n} for n in range(3)])
    assert await cancel_all_while_locked("storm", session.clear_session)
    assert await session.get_items() == []
