"""Undoing a turn that failed: what the SDK stored before the failure, removed.

The ``Runner`` stores a turn in steps, not at its end: the user's input as the
run starts (before the first model call), then each model step's items as that
step completes (an assistant message, or a tool call with its output). A run
that fails later (a model error, ``MaxTurnsExceeded``, a guardrail, a
cancellation) leaves those in the history, so a retry of the same input stores
it a second time.

``undone_on_failure(session)`` removes them again::

    async with undone_on_failure(session):
        await Runner.run(agent, text, session=session)

It counts the session's items when the block starts and, if the block raises
(``CancelledError`` included), pops the items stored since, newest first, then
re-raises. Popping goes through the session's own ``pop_item``, so it applies
to any ``Session``: a ``DjangoSession`` with an owner, on a shard, on custom
tables, behind the SDK's ``EncryptedSession``; each pop sends
``session_item_popped``. Token usage the failed run recorded stays recorded:
those tokens were spent.

The count is only right if nothing else writes the conversation meanwhile:
hold the conversation for the turn (one turn at a time), or accept that a
concurrent writer's newer items may be the ones popped.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agents.memory import Session

__all__ = ["undo_since", "undone_on_failure"]


async def stored_count(session: Session) -> int:
    """How many items ``session`` holds, whatever its ``session_settings.limit``."""
    return len(await session.get_items(limit=sys.maxsize))


async def undo_since(session: Session, count: int) -> list[Any]:
    """Pop the items stored after the first ``count``; return them, oldest first."""
    removed: list[Any] = []
    for _ in range(max(0, await stored_count(session) - count)):
        item = await session.pop_item()
        if item is None:  # someone else emptied it meanwhile
            break
        removed.append(item)
    removed.reverse()
    return removed


@asynccontextmanager
async def undone_on_failure(session: Session) -> AsyncIterator[None]:
    """Remove what the block stored in ``session`` if it raises, then re-raise.

    ``CancelledError`` counts as a failure: the removal is shielded from a second
    cancellation, so it finishes before the error reaches the caller. With
    ``Runner.run_streamed``, wait for the run to settle inside the block (consume
    ``stream_events()`` to its end, or after ``result.cancel()`` wait for
    ``result.run_loop_task``), so that no write of the run lands after the undo.
    """
    count = await stored_count(session)
    try:
        yield
    except BaseException:
        undo = asyncio.ensure_future(undo_since(session, count))
        try:
            await asyncio.shield(undo)
        except asyncio.CancelledError:
            await undo  # cancelled again: the undo still finishes first
        raise
