"""A write that nobody cancels is one ``await`` of ``sync_to_async``, nothing more.

``run_to_completion`` waits on the worker thread only once a cancellation arrives
(tests/faults/test_cancellation.py proves it still does); until then it adds no task,
``shield`` or callback of its own to each write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from openai_django_sessions import DjangoSession

pytestmark = pytest.mark.django_db(transaction=True)


async def test_writes_that_nobody_cancels_start_no_task_of_their_own() -> None:
    session = DjangoSession("no-task")
    created: list[Coroutine[Any, Any, Any]] = []

    def counting(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        created.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    loop.set_task_factory(counting)
    try:
        await session.add_items([{"role": "user", "content": "hello"}])
        popped = await session.pop_item()
        await session.clear_session()
    finally:
        loop.set_task_factory(previous)

    assert popped == {"role": "user", "content": "hello"}
    assert created == []
