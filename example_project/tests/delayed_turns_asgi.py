"""The example's ASGI application with turns held back, for the browser tests only.

- A background turn waits a moment before it starts: it then outlasts the
  redirect and the page load (slow on a busy machine), so the page is seen
  waiting and it is the page's polling that brings the reply.
- A streamed answer to a message containing ``(hold)`` stops after its third
  word and waits until the run is cancelled (the tab is closed); with ``(hold
  first)`` it waits before its first word. The page is then seen mid-reply,
  whatever the machine's speed.
- A message containing ``(fail once)`` makes the model fail the first time it
  is sent, as a model whose server cannot be reached does; sent again, it is
  answered.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from agents import ModelBehaviorError, RunResult

# chatsite.asgi sets Django up, which the app's modules need first.
from chatsite.asgi import application

# isort: split
from chat import history, tasks
from chat.offline_model import OfflineModel

DELAY = float(os.environ.get("EXAMPLE_TURN_DELAY", "3.0"))
_run_turn = tasks.run_turn
_before_word = OfflineModel.before_word
_stream_response = OfflineModel.stream_response
_failed_once: set[str] = set()


async def _delayed_run_turn(session_id: str, text: str, owner: object = None) -> RunResult:
    await asyncio.sleep(DELAY)
    return await _run_turn(session_id, text, owner)


def _last_user_text(items: list[dict[str, Any]]) -> str:
    said = history.user_texts(items)
    return said[-1] if said else ""


async def _held_before_word(self: OfflineModel, items: list[dict[str, Any]], position: int) -> None:
    text = _last_user_text(items)
    if ("(hold first)" in text and position == 0) or ("(hold)" in text and position == 3):
        await asyncio.Event().wait()  # until the run is cancelled
    await _before_word(self, items, position)


async def _failing_once_stream(self: OfflineModel, *args: Any, **kwargs: Any) -> Any:
    text = _last_user_text(history.normalize_input(kwargs.get("input", args[1])))
    if "(fail once)" in text and text not in _failed_once:
        _failed_once.add(text)
        raise ModelBehaviorError("Connection error.")
    async for event in _stream_response(self, *args, **kwargs):
        yield event


tasks.run_turn = _delayed_run_turn
OfflineModel.before_word = _held_before_word  # type: ignore[method-assign]
OfflineModel.stream_response = _failing_once_stream  # type: ignore[method-assign]

__all__ = ["application"]
