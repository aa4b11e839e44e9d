"""The example's agent and the operations on one conversation.

Views, the background task and the ``chat`` command all go through these
functions, so the web page and the terminal share one memory: the rows that
``DjangoSession`` keeps for a ``session_id``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from agents import Agent, RunConfig, Runner, RunResult
from agents.stream_events import RawResponsesStreamEvent, RunItemStreamEvent
from openai.types.responses import ResponseTextDeltaEvent
from openai_django_sessions.session import DjangoSession
from openai_django_sessions.turns import undone_on_failure

from chat import history
from chat.model_choice import chosen_model, uses_offline_model
from chat.tools import TOOLS
from chat.transcript import pretty_arguments

INSTRUCTIONS = (
    "You are the assistant of a small demo chat whose history is stored in a Django "
    "database. Answer briefly. Use current_time for the time in a city, calculate for "
    "arithmetic and stored_conversations for questions about what the database holds. "
    "Use the conversation history when the user refers to something said before."
)
MAX_TURNS = 6


def build_agent() -> Agent[None]:
    """A new agent on the model the environment chooses (see ``chat.model_choice``)."""
    return Agent(
        name="Chat assistant", instructions=INSTRUCTIONS, model=chosen_model(), tools=TOOLS
    )


def session_for(session_id: str, owner: Any = None) -> DjangoSession:
    """The conversation ``session_id``, scoped to ``owner`` (a user or its pk) if given.

    With an owner, a conversation of another user raises ``PermissionDenied``
    (see docs/how-to/ownership.md); without one (``manage.py chat``
    without ``--user``) nothing is scoped.
    """
    return DjangoSession(session_id, owner=owner)


def _run_config() -> RunConfig:
    # Traces go to OpenAI's servers, which the offline model must not need.
    return RunConfig(tracing_disabled=uses_offline_model())


async def run_turn(session_id: str, text: str, owner: Any = None) -> RunResult:
    """Run one turn: ``text`` plus the stored history in, new items stored.

    The SDK reads the history from the session and appends the user message,
    tool calls and the answer to it. One turn at a time per conversation, in
    every tab, process and the terminal: while another turn holds the
    conversation, ``SessionBusy`` is raised at once and nothing is stored. A
    turn that fails leaves no trace: what the SDK stored before the failure is
    removed (``turns.undone_on_failure``), so sending it again stores it once.
    """
    session = session_for(session_id, owner)
    # The lease first: the undo happens while the conversation is still held.
    async with session.exclusive(timeout=0.0), undone_on_failure(session):
        return await Runner.run(
            build_agent(), text, session=session, run_config=_run_config(), max_turns=MAX_TURNS
        )


@dataclass(frozen=True)
class TurnEvent:
    """What the page shows while a streamed turn runs.

    ``text``: the next piece of the answer; ``tool_call``: a tool was called
    (``name``, ``arguments``); ``tool_output``: its ``output`` came back.
    """

    kind: Literal["text", "tool_call", "tool_output"]
    text: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""


async def stream_turn(session_id: str, text: str, owner: Any = None) -> AsyncIterator[TurnEvent]:
    """Run one turn as ``run_turn`` does (one at a time), yielding its answer as it is written.

    If the caller stops (the page was closed: the iteration is cancelled), the
    run is cancelled and, once it has settled, what it stored is removed, as
    for a failed turn: the history is the one before the message was sent.
    """
    session = session_for(session_id, owner)
    async with session.exclusive(timeout=0.0), undone_on_failure(session):
        result = Runner.run_streamed(
            build_agent(), text, session=session, run_config=_run_config(), max_turns=MAX_TURNS
        )
        try:
            async for event in result.stream_events():
                shown = _shown(event)
                if shown is not None:
                    yield shown
        except BaseException:
            result.cancel()
            if result.run_loop_task is not None:
                # Wait for the run's last write to commit or roll back before the undo.
                await asyncio.wait([result.run_loop_task])
            raise


def _shown(event: object) -> TurnEvent | None:
    """The ``TurnEvent`` for one of the SDK's stream events, if the page shows it."""
    if isinstance(event, RawResponsesStreamEvent) and isinstance(
        event.data, ResponseTextDeltaEvent
    ):
        return TurnEvent("text", text=event.data.delta)
    if isinstance(event, RunItemStreamEvent) and event.name == "tool_called":
        item = history.as_dict(event.item.raw_item)
        return TurnEvent(
            "tool_call",
            name=str(item.get("name", "")),
            arguments=pretty_arguments(item.get("arguments", "")),
        )
    if isinstance(event, RunItemStreamEvent) and event.name == "tool_output":
        return TurnEvent("tool_output", output=str(getattr(event.item, "output", "")))
    return None


async def undo_last_exchange(session_id: str, owner: Any = None) -> int:
    """Remove the newest items up to and including the last user message.

    Returns how many items were removed (0 for an empty conversation). Holds
    the conversation as a turn does: while a turn is being written (in any tab,
    process or the terminal) it raises ``SessionBusy`` and removes nothing.
    """
    session = session_for(session_id, owner)
    removed = 0
    async with session.exclusive(timeout=0.0):
        while (item := await session.pop_item()) is not None:
            removed += 1
            if history.is_user_message(history.as_dict(item)):
                break
    return removed


async def fork_before(session_id: str, owner: Any, new_session_id: str, index: int) -> None:
    """Copy the items before ``index`` of ``session_id`` into ``new_session_id``.

    One transaction (``DjangoSession.afork``); the new conversation has the same
    owner and title and records where it came from. The original is unchanged.
    """
    await session_for(session_id, owner).afork(new_session_id, keep=index)
    if index == 0:
        # The first message changes: an empty title makes the library name the
        # copy after the edited one when it is stored, as it named the original.
        await session_for(new_session_id, owner).aupdate_details(title="")


async def clear_conversation(session_id: str, owner: Any = None) -> None:
    """Delete the whole history; ``SessionBusy`` while a turn is being written."""
    session = session_for(session_id, owner)
    async with session.exclusive(timeout=0.0):
        await session.clear_session()
