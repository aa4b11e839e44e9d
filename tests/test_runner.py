"""End to end: the SDK's Runner reads and writes history through DjangoSession.

Needs openai-agents 0.22 or newer (``agents.testing``); the oldest-versions leg of
the test matrix leaves this module out.
"""

from __future__ import annotations

import threading

import pytest
from agents import Agent, Runner, function_tool
from agents.extensions.memory import EncryptedSession
from agents.testing import ScriptedModel, assistant_message, function_call

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage

pytestmark = pytest.mark.django_db(transaction=True)


@function_tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def texts(items: list) -> list[str]:
    """The plain text of each message item (user or assistant) in order."""
    found = []
    for item in items:
        content = item.get("content")
        if isinstance(content, str):
            found.append(content)
        elif isinstance(content, list):
            found.extend(part["text"] for part in content if "text" in part)
    return found


async def test_second_run_sees_the_first_runs_history():
    model = ScriptedModel([[assistant_message("Hello Ada")], [assistant_message("You are Ada")]])
    agent = Agent(name="assistant", model=model)
    session = DjangoSession("runner-history")

    await Runner.run(agent, "My name is Ada", session=session)
    result = await Runner.run(agent, "What is my name?", session=DjangoSession("runner-history"))

    assert result.final_output == "You are Ada"
    second_input = model.calls[1].input
    assert texts(second_input) == ["My name is Ada", "Hello Ada", "What is my name?"]
    assert texts(await session.get_items()) == [
        "My name is Ada",
        "Hello Ada",
        "What is my name?",
        "You are Ada",
    ]


async def test_tool_calls_and_outputs_are_stored_and_replayed():
    model = ScriptedModel(
        [
            [function_call("add", {"a": 2, "b": 3}, call_id="call-1")],
            [assistant_message("2 + 3 = 5")],
            [assistant_message("It was 5")],
        ]
    )
    agent = Agent(name="calculator", model=model, tools=[add])
    session = DjangoSession("runner-tools")

    await Runner.run(agent, "What is 2 + 3?", session=session)
    stored = await session.get_items()
    call = next(i for i in stored if i.get("type") == "function_call")
    output = next(i for i in stored if i.get("type") == "function_call_output")
    assert (call["name"], call["call_id"]) == ("add", "call-1")
    assert call["arguments"] in ('{"a":2,"b":3}', '{"a": 2, "b": 3}')
    assert (output["call_id"], str(output["output"])) == ("call-1", "5")

    await Runner.run(agent, "What was the result?", session=session)
    replayed = model.calls[2].input
    assert any(i.get("type") == "function_call" and i["call_id"] == "call-1" for i in replayed)
    assert any(i.get("type") == "function_call_output" for i in replayed)


async def test_session_settings_limit_bounds_what_the_model_sees():
    model = ScriptedModel([[assistant_message(f"reply {n}")] for n in range(3)])
    agent = Agent(name="assistant", model=model)
    for n in range(2):
        await Runner.run(agent, f"question {n}", session=DjangoSession("limited"))
    limited = DjangoSession("limited", session_settings={"limit": 2})
    await Runner.run(agent, "question 2", session=limited)
    assert texts(model.calls[2].input) == ["question 1", "reply 1", "question 2"]


async def test_encrypted_session_wrapping_a_django_session_round_trips():
    model = ScriptedModel([[assistant_message("secret kept")], [assistant_message("again")]])
    agent = Agent(name="assistant", model=model)
    inner = DjangoSession("encrypted")
    session = EncryptedSession("encrypted", underlying_session=inner, encryption_key="k" * 32)

    await Runner.run(agent, "my secret is 42", session=session)
    await Runner.run(agent, "what is it?", session=session)

    assert texts(model.calls[1].input) == ["my secret is 42", "secret kept", "what is it?"]
    raw = [data async for data in AgentMessage.objects.values_list("data", flat=True)]
    assert raw and all("__enc__" in data for data in raw)  # stored encrypted
    assert not any("my secret is" in str(data) for data in raw)
    assert texts(await session.get_items()) == [
        "my secret is 42",
        "secret kept",
        "what is it?",
        "again",
    ]


def test_run_sync_in_a_plain_worker_thread_with_no_running_loop():
    model = ScriptedModel([[assistant_message("done in a task")]])
    agent = Agent(name="worker", model=model)
    outcome: dict = {}

    def task() -> None:
        try:
            result = Runner.run_sync(agent, "background job", session=DjangoSession("task"))
            outcome["output"] = result.final_output
        except BaseException as exc:  # reported to the test thread below
            outcome["error"] = exc

    thread = threading.Thread(target=task)
    thread.start()
    thread.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["output"] == "done in a task"
    stored = list(
        AgentMessage.objects.filter(session__session_id="task")
        .order_by("id")
        .values_list("data", flat=True)
    )
    assert texts(stored) == ["background job", "done in a task"]


async def test_agents_run_in_turn_on_one_user_message_store_it_once():
    session = DjangoSession("in-turn", skip_duplicate_items=True)
    turn = [{"role": "user", "content": "Plan my trip"}]
    for name in ("planner", "reviewer"):
        model = ScriptedModel([[assistant_message(f"{name} says hi")]])
        await Runner.run(Agent(name=name, model=model), turn, session=session)

    assert texts(await session.get_items()) == [
        "Plan my trip",
        "planner says hi",
        "reviewer says hi",
    ]
