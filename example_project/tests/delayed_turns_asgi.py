"""The example's ASGI application with every turn held back for a moment.

For the browser test only: a background turn then outlasts the redirect and
the page load (slow on a busy machine), so the page is seen waiting and it is
the page's polling that brings the reply.
"""

from __future__ import annotations

import asyncio
import os

from agents import RunResult

# chatsite.asgi sets Django up, which the app's modules need first.
from chatsite.asgi import application

# isort: split
from chat import tasks

DELAY = float(os.environ.get("EXAMPLE_TURN_DELAY", "3.0"))
_run_turn = tasks.run_turn


async def _delayed_run_turn(session_id: str, text: str, owner: object = None) -> RunResult:
    await asyncio.sleep(DELAY)
    return await _run_turn(session_id, text, owner)


tasks.run_turn = _delayed_run_turn

__all__ = ["application"]
