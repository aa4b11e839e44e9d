"""The example's agent and the operations on one conversation.

Views, the background task and the ``chat`` command all go through these
functions, so the web page and the terminal share one memory: the rows that
``DjangoSession`` keeps for a ``session_id``.
"""

from __future__ import annotations

from typing import Any

from agents import Agent, RunConfig, Runner, RunResult
from openai_django_sessions.session import DjangoSession

from chat import history
from chat.model_choice import chosen_model, uses_offline_model
from chat.tools import TOOLS

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


async def run_turn(session_id: str, text: str, owner: Any = None) -> RunResult:
    """Run one turn: ``text`` plus the stored history in, new items stored.

    The SDK reads the history from the session and appends the user message,
    tool calls and the answer to it.
    """
    # Traces go to OpenAI's servers, which the offline model must not need.
    config = RunConfig(tracing_disabled=uses_offline_model())
    return await Runner.run(
        build_agent(),
        text,
        session=session_for(session_id, owner),
        run_config=config,
        max_turns=MAX_TURNS,
    )


async def undo_last_exchange(session_id: str, owner: Any = None) -> int:
    """Remove the newest items up to and including the last user message.

    Returns how many items were removed (0 for an empty conversation).
    """
    session = session_for(session_id, owner)
    removed = 0
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
    await session_for(session_id, owner).clear_session()
