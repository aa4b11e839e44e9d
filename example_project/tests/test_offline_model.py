"""The offline model answers from the input it is given, and calls tools for what they answer."""

from __future__ import annotations

import json
from typing import Any

from agents import ModelSettings, ModelTracing
from asgiref.sync import async_to_sync

from chat.offline_model import PREFIX, OfflineModel
from chat.tools import TOOLS


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def ask(items: list[dict[str, Any]] | str, tools: list[Any] | None = None) -> list[Any]:
    """The model's output items for ``items``, with the example's tools by default."""
    response = async_to_sync(OfflineModel().get_response)(
        None,
        items,
        ModelSettings(),
        TOOLS if tools is None else tools,
        None,
        [],
        ModelTracing.DISABLED,
        previous_response_id=None,
        conversation_id=None,
        prompt=None,
    )
    return response.output


def answer(items: list[dict[str, Any]] | str) -> str:
    [message] = ask(items)
    assert message.type == "message"
    return message.content[0].text


def test_name_is_recalled_from_an_earlier_message() -> None:
    history = [user("Hi, my name is Grace Hopper"), assistant("Nice to meet you.")]
    reply = answer([*history, user("What is my name?")])
    assert reply == f"{PREFIX}Your name is Grace Hopper. You told me earlier."


def test_without_a_name_in_the_history_the_model_says_so() -> None:
    assert "not told me your name" in answer([user("What is my name?")])


def test_the_latest_name_wins() -> None:
    history = [user("my name is Ada"), assistant("ok"), user("call me Bob"), assistant("ok")]
    assert "Your name is Bob" in answer([*history, user("who am I?")])


def test_a_changed_name_is_noted_with_the_old_one() -> None:
    reply = answer([user("my name is Ada"), assistant("ok"), user("my name is Bob")])
    assert "Bob" in reply
    assert "Ada" in reply


def test_previous_message_is_quoted() -> None:
    history = [user("I like green tea"), assistant("ok")]
    assert answer([*history, user("What did I say before?")]).endswith("“I like green tea”")


def test_first_message_has_no_previous_one() -> None:
    assert "first thing you said" in answer("what did I say before?")


def test_time_question_calls_the_current_time_tool() -> None:
    [call] = ask([user("What time is it in Tokyo right now?")])
    assert call.type == "function_call"
    assert call.name == "current_time"
    assert json.loads(call.arguments) == {"city": "Tokyo"}
    assert call.call_id.startswith("call_")


def test_arithmetic_calls_the_calculate_tool() -> None:
    [call] = ask([user("what is 12 * (3 + 4)?")])
    assert (call.name, json.loads(call.arguments)) == ("calculate", {"expression": "12 * (3 + 4)"})


def test_question_about_stored_data_calls_the_lookup_tool() -> None:
    [call] = ask([user("How many conversations are stored?")])
    assert call.name == "stored_conversations"


def test_tool_output_becomes_the_answer() -> None:
    items = [
        user("my name is Ada"),
        assistant("hello"),
        user("what is 6*7"),
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "calculate",
            "arguments": '{"expression": "6*7"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "6*7 = 42"},
    ]
    reply = answer(items)
    assert reply.startswith(PREFIX)
    assert "From calculate: 6*7 = 42" in reply
    assert "Ada" in reply  # the history is still used for the final answer


def test_without_the_tool_the_model_does_not_call_it() -> None:
    [message] = ask([user("what is 6*7")], tools=[])
    assert message.type == "message"


def test_other_messages_are_answered_from_their_text_and_position() -> None:
    first = answer("hello there")
    second = answer([user("hello there"), assistant("..."), user("nice weather")])
    assert "“hello there”" in first
    assert "message 1 " in first
    assert "“nice weather”" in second
    assert "message 2 " in second


def test_every_answer_says_it_is_the_offline_model() -> None:
    for text in ["hello", "my name is Ada", "what is my name?", "what did I say before?"]:
        assert answer(text).startswith(PREFIX)


def test_same_input_same_output() -> None:
    items = [user("what time is it in Paris?")]
    assert ask(items) == ask(items)


def test_streaming_gives_the_same_answer() -> None:
    async def stream() -> list[Any]:
        events = OfflineModel().stream_response(
            None,
            [user("my name is Ada")],
            ModelSettings(),
            TOOLS,
            None,
            [],
            ModelTracing.DISABLED,
            previous_response_id=None,
            conversation_id=None,
            prompt=None,
        )
        return [event async for event in events]

    events = async_to_sync(stream)()
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert events[-1].response.output == ask("my name is Ada")
