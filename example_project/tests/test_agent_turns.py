"""Turns through the SDK's Runner and DjangoSession: what is stored, what the agent sees."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from openai_django_sessions.models import AgentMessage, AgentSession

from chat.agent import clear_conversation, run_turn, session_for, undo_last_exchange
from chat.transcript import build_transcript

pytestmark = pytest.mark.django_db


def say(session_id: str, text: str) -> str:
    return str(async_to_sync(run_turn)(session_id, text).final_output)


def stored(session_id: str) -> list[dict]:
    return async_to_sync(session_for(session_id).get_items)()


def test_a_turn_stores_the_user_message_and_the_answer() -> None:
    reply = say("t-1", "hello")
    items = stored("t-1")
    assert items[0] == {"role": "user", "content": "hello"}
    assert items[1]["role"] == "assistant"
    assert items[1]["content"][0]["text"] == reply


def test_the_agent_sees_the_stored_history() -> None:
    say("t-2", "My name is Ada")
    assert "Your name is Ada" in say("t-2", "What is my name?")


def test_history_is_per_session() -> None:
    say("t-3a", "My name is Ada")
    assert "not told me your name" in say("t-3b", "What is my name?")


def test_a_tool_turn_stores_call_output_and_answer_in_order() -> None:
    reply = say("t-4", "what is 2 + 2?")
    kinds = [item.get("type", "message") for item in stored("t-4")]
    assert kinds == ["message", "function_call", "function_call_output", "message"]
    assert "2 + 2 = 4" in reply


def test_the_lookup_tool_reads_the_database() -> None:
    say("t-5a", "hello")
    reply = say("t-5b", "how many conversations are stored?")
    assert AgentSession.objects.count() == 2
    # The counts the page shows: the asking turn's call, output and reply come after.
    told = AgentMessage.objects.count() - 3
    assert f"2 conversations with {told} stored messages in all, before this turn's" in reply


def test_undo_removes_back_to_and_including_the_last_user_message() -> None:
    say("t-6", "My name is Ada")
    say("t-6", "what is 6*7")
    assert async_to_sync(undo_last_exchange)("t-6") == 4
    assert [entry.text for entry in build_transcript(stored("t-6")) if entry.kind == "user"] == [
        "My name is Ada"
    ]


def test_undo_on_an_empty_conversation_removes_nothing() -> None:
    assert async_to_sync(undo_last_exchange)("t-7") == 0


def test_clear_forgets_everything() -> None:
    say("t-8", "My name is Ada")
    async_to_sync(clear_conversation)("t-8")
    assert stored("t-8") == []
    assert "not told me your name" in say("t-8", "What is my name?")
