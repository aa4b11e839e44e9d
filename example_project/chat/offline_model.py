"""A local, deterministic model behind the SDK's ``Model`` interface.

It needs no API key and no network, yet it is not a canned-reply stub: every
answer is computed from the ``input`` the SDK passes, which is the history
``DjangoSession`` returned plus the new message. So it shows, end to end, that
the agent really sees what the database remembers:

- "my name is Ada" ... later "what is my name?" -> answered from the history;
- "what did I say before?" -> quotes the previous user message;
- "what time is it in Tokyo?", "what is 12 * (3 + 4)?", "how many conversations
  are stored?" -> a ``function_call`` to the matching tool; when the tool's
  output comes back in the next call, the answer is built from it;
- anything else -> an answer that quotes the message and counts the turns.

Every answer starts with ``PREFIX`` so nobody mistakes it for a real model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from agents import Model, ModelResponse, ModelSettings, ModelTracing, Tool, Usage
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import TResponseInputItem, TResponseOutputItem, TResponseStreamEvent
from agents.models.fake_id import FAKE_RESPONSES_ID
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseUsage,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam

from chat import history, intents

PREFIX = "Offline model: "
# Between two streamed words: a reply of 20 words takes about half a second to write.
WORD_PAUSE = 0.025
MODEL_NAME = "offline-deterministic"
HELP = (
    "I run locally without an API key and understand only a few things: tell me your name, "
    'ask "what is my name?" or "what did I say before?", ask the time in a city, '
    "give me some arithmetic, or ask how many conversations are stored."
)


class OfflineModel(Model):
    """Answers from the conversation it is given; calls tools it is given.

    Deterministic: the same input (and tool list) always gives the same output,
    call ids included (they are derived from the input).
    """

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        items = history.normalize_input(input)
        output = respond(items, tool_names={tool.name for tool in tools})
        return ModelResponse(output=output, usage=_usage(items, output), response_id=None)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        # The answer exists whole at once; its text is sent a word at a time, as a
        # real model streams it, so the page shows the reply growing.
        items = history.normalize_input(input)
        output = respond(items, tool_names={tool.name for tool in tools})
        usage = _usage(items, output)
        response = _response(output, usage)
        sequence = 0
        yield ResponseCreatedEvent(
            type="response.created",
            response=response.model_copy(update={"output": [], "status": "in_progress"}),
            sequence_number=sequence,
        )
        for index, item in enumerate(output):
            sequence += 1
            yield ResponseOutputItemAddedEvent(
                type="response.output_item.added",
                item=item,
                output_index=index,
                sequence_number=sequence,
            )
            if isinstance(item, ResponseOutputMessage):
                for position, word in enumerate(_words(_text_of(item))):
                    await self.before_word(items, position)
                    sequence += 1
                    yield ResponseTextDeltaEvent(
                        type="response.output_text.delta",
                        item_id=item.id,
                        output_index=index,
                        content_index=0,
                        delta=word,
                        logprobs=[],
                        sequence_number=sequence,
                    )
            sequence += 1
            yield ResponseOutputItemDoneEvent(
                type="response.output_item.done",
                item=item,
                output_index=index,
                sequence_number=sequence,
            )
        yield ResponseCompletedEvent(
            type="response.completed", response=response, sequence_number=sequence + 1
        )

    async def before_word(self, items: list[dict[str, Any]], position: int) -> None:
        """Wait before word ``position`` of a streamed answer to ``items``.

        A pause, so the page shows the answer growing (tests hold the answer here).
        """
        await asyncio.sleep(WORD_PAUSE)


def respond(items: list[dict[str, Any]], *, tool_names: set[str]) -> list[TResponseOutputItem]:
    """The model's output for the conversation ``items`` (oldest first).

    If the latest user message was followed by tool outputs, the answer is made
    from them; otherwise the latest user message is answered, with a tool call
    when a tool in ``tool_names`` answers it.
    """
    index = history.last_user_index(items)
    if index is None:
        return [_message(PREFIX + "I did not receive a message from you. " + HELP)]
    after = items[index + 1 :]
    if after and after[-1].get("type") == "function_call_output":
        return [_message(_answer_from_tools(items[:index], after))]

    text = history.message_text(items[index])
    earlier = history.user_texts(items[:index])
    name = _known_name(earlier)

    if intents.asks_name(text):
        if name:
            return [_message(f"{PREFIX}Your name is {name}. You told me earlier.")]
        return [_message(f"{PREFIX}You have not told me your name yet.")]

    if intents.asks_previous_message(text):
        if earlier:
            return [_message(f"{PREFIX}Before this you said: “{earlier[-1]}”")]
        return [_message(f"{PREFIX}This is the first thing you said here.")]

    call = _tool_request(text, tool_names)
    if call is not None:
        return [_function_call(items, *call)]

    new_name = intents.stated_name(text)
    if new_name:
        if name and name != new_name:
            reply = f"Noted: your name is {new_name} now (you told me {name} before)."
        else:
            reply = f"Nice to meet you, {new_name}. I will remember your name."
        return [_message(PREFIX + reply)]

    greeting = f", {name}" if name else ""
    count = len(earlier) + 1
    reply = (
        f"You said “{text}”{greeting}. That is message {count} from you in this "
        f"conversation. {HELP}"
    )
    return [_message(PREFIX + reply)]


def _known_name(user_texts: list[str]) -> str | None:
    """The name the user gave most recently in ``user_texts``."""
    for text in reversed(user_texts):
        name = intents.stated_name(text)
        if name:
            return name
    return None


def _tool_request(text: str, tool_names: set[str]) -> tuple[str, dict[str, str]] | None:
    """``(tool name, arguments)`` when ``text`` asks for something a tool answers."""
    city = intents.time_city(text)
    if city and "current_time" in tool_names:
        return "current_time", {"city": city}
    if intents.asks_stats(text) and "stored_conversations" in tool_names:
        return "stored_conversations", {}
    expression = intents.arithmetic(text)
    if expression and "calculate" in tool_names:
        return "calculate", {"expression": expression}
    return None


def _answer_from_tools(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    """The final answer once the tools called for this message have returned."""
    calls = {item.get("call_id"): item for item in after if item.get("type") == "function_call"}
    results = []
    for item in after:
        if item.get("type") != "function_call_output":
            continue
        call = calls.get(item.get("call_id"), {})
        output = item.get("output")
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        results.append(f"From {call.get('name', 'a tool')}: {text}")
    name = _known_name(history.user_texts(before))
    opener = f"Here you are, {name}. " if name else ""
    return PREFIX + opener + " ".join(results)


def _digest(items: list[dict[str, Any]], *parts: str) -> str:
    """A short id derived from the conversation so far: same input, same id."""
    seed = json.dumps([len(items), items[-1] if items else None, *parts], default=str)
    return hashlib.sha256(seed.encode()).hexdigest()[:24]


def _message(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        # The SDK's placeholder for providers without item ids: it is never sent
        # to OpenAI as a server id if the conversation later uses a real model.
        id=FAKE_RESPONSES_ID,
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[], logprobs=[])],
    )


def _text_of(message: ResponseOutputMessage) -> str:
    return "".join(getattr(part, "text", "") for part in message.content)


def _words(text: str) -> list[str]:
    """``text`` in pieces that join back to it: each word with the spaces before it."""
    return re.findall(r"\s*\S+|\s+$", text)


def _function_call(
    items: list[dict[str, Any]], name: str, arguments: dict[str, str]
) -> ResponseFunctionToolCall:
    serialized = json.dumps(arguments, ensure_ascii=False)
    return ResponseFunctionToolCall(
        id=FAKE_RESPONSES_ID,
        call_id=f"call_{_digest(items, name, serialized)}",
        type="function_call",
        name=name,
        arguments=serialized,
        status="completed",
    )


def _usage(items: list[dict[str, Any]], output: list[TResponseOutputItem]) -> Usage:
    # Words stand in for tokens: there is no tokenizer offline.
    words_in = sum(len(json.dumps(item, default=str).split()) for item in items)
    words_out = sum(len(item.model_dump_json().split()) for item in output)
    return Usage(
        requests=1,
        input_tokens=words_in,
        output_tokens=words_out,
        total_tokens=words_in + words_out,
    )


def _response(output: list[TResponseOutputItem], usage: Usage) -> Response:
    return Response(
        id="offline-response",
        created_at=0,
        model=MODEL_NAME,
        object="response",
        output=output,
        tool_choice="auto",
        tools=[],
        top_p=None,
        parallel_tool_calls=False,
        status="completed",
        usage=ResponseUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
            # Usage builds these for the installed openai version (their fields vary).
            input_tokens_details=usage.input_tokens_details,
            output_tokens_details=usage.output_tokens_details,
        ),
    )
