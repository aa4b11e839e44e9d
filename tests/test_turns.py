"""``turns.undone_on_failure``: a failed or cancelled run leaves the history as it was.

Needs openai-agents 0.22 or newer (``agents.testing``), like ``test_runner``.
"""

from __future__ import annotations

import asyncio

import pytest
from agents import Agent, ModelBehaviorError, Runner, function_tool
from agents.extensions.memory import EncryptedSession
from agents.testing import ScriptedModel, assistant_message, function_call

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage
from openai_django_sessions.turns import undo_since, undone_on_failure
from tests.test_runner import texts

pytestmark = pytest.mark.django_db(transaction=True)

tool_started = asyncio.Event()


@function_tool
async def slow_lookup(city: str) -> str:
    """Look a city up (never answers: the test cancels the run meanwhile)."""
    tool_started.set()
    await asyncio.Event().wait()
    return city


def model_error() -> Exception:
    return ModelBehaviorError("Connection error.")


async def earlier_exchange(session_id: str) -> DjangoSession:
    session = DjangoSession(session_id)
    await session.add_items(
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    )
    return session


async def test_a_model_error_removes_the_input_the_sdk_stored_and_a_retry_stores_it_once():
    session = await earlier_exchange("failed-turn")
    model = ScriptedModel([model_error(), [assistant_message("Paris")]])
    agent = Agent(name="assistant", model=model)

    with pytest.raises(ModelBehaviorError):
        async with undone_on_failure(session):
            await Runner.run(agent, "capital of France?", session=session)
    assert texts(await session.get_items()) == ["hello", "hi"]

    async with undone_on_failure(session):
        await Runner.run(agent, "capital of France?", session=session)
    assert texts(await session.get_items()) == ["hello", "hi", "capital of France?", "Paris"]


async def test_a_failure_after_a_tool_step_removes_the_call_and_its_output_too():
    @function_tool
    def lookup(city: str) -> str:
        """Look a city up."""
        return f"{city}: 20 degrees"

    session = await earlier_exchange("failed-after-tool")
    model = ScriptedModel(
        [[function_call("lookup", {"city": "Oslo"}, call_id="call-1")], model_error()]
    )
    agent = Agent(name="assistant", model=model, tools=[lookup])

    with pytest.raises(ModelBehaviorError):
        async with undone_on_failure(session):
            await Runner.run(agent, "weather in Oslo?", session=session)

    assert await session.get_items() == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
    ]


async def test_a_cancelled_streamed_run_is_undone_once_it_has_settled():
    session = await earlier_exchange("cancelled-turn")
    model = ScriptedModel([[function_call("slow_lookup", {"city": "Oslo"}, call_id="call-1")]])
    agent = Agent(name="assistant", model=model, tools=[slow_lookup])
    tool_started.clear()

    async def turn() -> None:
        async with undone_on_failure(session):
            result = Runner.run_streamed(agent, "weather in Oslo?", session=session)
            try:
                async for _event in result.stream_events():
                    pass
            except asyncio.CancelledError:
                result.cancel()
                if result.run_loop_task is not None:
                    await asyncio.wait([result.run_loop_task])
                raise

    running = asyncio.create_task(turn())
    await tool_started.wait()  # the input is stored and the tool runs
    assert texts(await session.get_items()) == ["hello", "hi", "weather in Oslo?"]
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert texts(await session.get_items()) == ["hello", "hi"]
    assert await AgentMessage.objects.filter(session__session_id="cancelled-turn").acount() == 2


async def test_a_turn_that_succeeds_keeps_everything_it_stored():
    session = await earlier_exchange("kept-turn")
    agent = Agent(name="assistant", model=ScriptedModel([[assistant_message("Paris")]]))

    async with undone_on_failure(session):
        await Runner.run(agent, "capital of France?", session=session)

    assert texts(await session.get_items()) == ["hello", "hi", "capital of France?", "Paris"]


async def test_the_count_ignores_the_sessions_limit_and_an_encryption_wrapper():
    inner = DjangoSession("wrapped-turn", session_settings={"limit": 1})
    session = EncryptedSession("wrapped-turn", underlying_session=inner, encryption_key="k" * 32)
    await session.add_items([{"role": "user", "content": f"old {n}"} for n in range(3)])
    agent = Agent(name="assistant", model=ScriptedModel([model_error()]))

    with pytest.raises(ModelBehaviorError):
        async with undone_on_failure(session):
            await Runner.run(agent, "new", session=session)

    assert texts(await inner.get_items(limit=10)) == []  # encrypted at rest
    assert texts(await session.get_items(limit=10)) == ["old 0", "old 1", "old 2"]


async def test_undo_since_returns_the_removed_items_oldest_first():
    session = await earlier_exchange("undo-since")
    await session.add_items([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])

    removed = await undo_since(session, 2)

    assert texts(removed) == ["a", "b"]
    assert texts(await session.get_items()) == ["hello", "hi"]
